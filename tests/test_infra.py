"""infra/ (Terraform) held together with the code that relies on it.

Terraform's providers cannot be downloaded here, so every ``.tf`` file is parsed with
python-hcl2 and checked against the ec2 provider: tag keys, launch template name, user data
template, and an IAM policy that allows exactly the EC2 actions the provider calls. checkov
(.ci/run, infra/check.sh) scans the same files for security misconfigurations.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import pytest

from control_plane.providers.ec2 import CLUSTER_TAG, DEFAULT_LAUNCH_TEMPLATE, EC2_ACTIONS, POOL_TAG
from control_plane.providers.user_data import TEMPLATE_VARIABLES, USER_DATA_TEMPLATE, render

INFRA = Path(__file__).resolve().parent.parent / "infra"
TEMPLATE = INFRA / "templates" / "agent-user-data.sh.tftpl"


def clean(value: Any) -> Any:
    """python-hcl2's output without its markers, and string literals without their quotes."""
    if isinstance(value, dict):
        return {
            clean(key): clean(item)
            for key, item in value.items()
            if key not in ("__is_block__", "__comments__", "__inline_comments__")
        }
    if isinstance(value, list):
        return [clean(item) for item in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


@dataclass
class Infra:
    files: list[str] = field(default_factory=list)
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)

    def policy_statements(self, name: str) -> list[dict[str, Any]]:
        statements: list[dict[str, Any]] = self.data[("aws_iam_policy_document", name)]["statement"]
        return statements


def load_infra() -> Infra:
    infra = Infra()
    for path in sorted(INFRA.glob("*.tf")):
        with path.open() as file:
            parsed = clean(hcl2.load(file))
        infra.files.append(path.name)
        for kind, blocks in (("resource", infra.resources), ("data", infra.data)):
            for block in parsed.get(kind, []):
                for type_name, named in block.items():
                    for name, body in named.items():
                        assert (type_name, name) not in blocks, f"{kind} {type_name}.{name} twice"
                        blocks[(type_name, name)] = body
        for block in parsed.get("variable", []):
            infra.variables.update(block)
        for block in parsed.get("output", []):
            infra.outputs.update(block)
        for block in parsed.get("locals", []):
            infra.locals.update(block)
    return infra


@pytest.fixture(scope="module")
def infra() -> Infra:
    return load_infra()


def actions_in(statements: list[dict[str, Any]]) -> Iterator[str]:
    for statement in statements:
        yield from statement.get("actions", [])


def test_every_tf_file_parses(infra: Infra) -> None:
    assert {"versions.tf", "variables.tf", "outputs.tf", "iam.tf", "s3.tf"} <= set(infra.files)
    for name, variable in infra.variables.items():
        assert variable.get("description"), f"variable {name} has no description"
        assert "type" in variable, f"variable {name} has no type"
    for name, output in infra.outputs.items():
        assert output.get("description"), f"output {name} has no description"


def test_tag_keys_are_the_providers(infra: Infra) -> None:
    assert infra.locals["cluster_tag_key"] == CLUSTER_TAG
    assert infra.locals["pool_tag_key"] == POOL_TAG
    template = infra.resources[("aws_launch_template", "agent")]
    for specification in template["tag_specifications"]:
        assert specification["tags"] == {
            "${(local.cluster_tag_key)}": "${var.cluster}",
            "${(local.pool_tag_key)}": "${var.default_pool}",
        }


def test_launch_template_name_is_the_providers_default(infra: Infra) -> None:
    template = infra.resources[("aws_launch_template", "agent")]
    assert template["name"] == "${var.launch_template_name}"
    assert infra.variables["launch_template_name"]["default"] == DEFAULT_LAUNCH_TEMPLATE


def test_control_plane_may_call_exactly_the_providers_ec2_actions(infra: Infra) -> None:
    allowed = set(actions_in(infra.policy_statements("control_plane")))
    ec2_allowed = {action for action in allowed if action.startswith("ec2:")}
    assert ec2_allowed == set(EC2_ACTIONS), (
        f"only in the policy: {sorted(ec2_allowed - set(EC2_ACTIONS))}; "
        f"only in the provider: {sorted(set(EC2_ACTIONS) - ec2_allowed)}"
    )
    assert allowed - ec2_allowed == {
        "iam:PassRole",
        "kms:CreateGrant",
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:GenerateDataKeyWithoutPlaintext",
    }
    for (kind, name), _ in infra.data.items():
        if kind == "aws_iam_policy_document" and name != "control_plane":
            others = {a for a in actions_in(infra.policy_statements(name)) if a.startswith("ec2:")}
            assert not others, f"policy {name} allows EC2 actions: {others}"


def test_control_plane_permissions_are_limited_by_the_cluster_tag(infra: Infra) -> None:
    def conditions(statement: dict[str, Any]) -> set[tuple[str, str, str]]:
        return {
            (c["test"], c["variable"], ",".join(c["values"]))
            for c in statement.get("condition", [])
        }

    statements = infra.policy_statements("control_plane")
    by_sid = {statement["sid"]: statement for statement in statements}
    tagged = ("StringEquals", "aws:RequestTag/${local.cluster_tag_key}", "${var.cluster}")
    assert conditions(by_sid["LaunchOnlyTaggedInstancesAndVolumes"]) == {tagged}
    assert conditions(by_sid["TerminateOnlyThisClustersInstances"]) == {
        ("StringEquals", "aws:ResourceTag/${local.cluster_tag_key}", "${var.cluster}")
    }
    assert conditions(by_sid["TagOnlyAtLaunch"]) == {
        ("StringEquals", "ec2:CreateAction", "RunInstances")
    }
    # Creating instances is only allowed with the tag; the untagged RunInstances statement
    # covers the template, network and image an instance is made from, never instances.
    untagged = by_sid["LaunchFromTheAgentTemplateNetworkAndImage"]
    assert ":instance/" not in str(untagged["resources"])
    assert ":volume/" not in str(untagged["resources"])
    wildcard = [s["sid"] for s in statements if s.get("resources") == ["*"]]
    assert wildcard == ["ListInstancesToReconcile"]
    assert by_sid["ListInstancesToReconcile"]["actions"] == ["ec2:DescribeInstances"]
    assert all(not a.endswith("*") for a in actions_in(statements))


def test_launch_template_requires_imdsv2_and_encrypts_its_root_volume(infra: Infra) -> None:
    template = infra.resources[("aws_launch_template", "agent")]
    [metadata] = template["metadata_options"]
    assert metadata["http_tokens"] == "required"
    assert metadata["http_put_response_hop_limit"] == 1
    [root] = template["block_device_mappings"]
    [ebs] = root["ebs"]
    assert ebs["encrypted"] is True
    assert ebs["kms_key_id"] == "${aws_kms_key.paddler.arn}"


def test_launch_template_user_data_is_the_providers_template(infra: Infra) -> None:
    assert TEMPLATE.read_text() == USER_DATA_TEMPLATE
    user_data = infra.resources[("aws_launch_template", "agent")]["user_data"]
    assert "templates/agent-user-data.sh.tftpl" in user_data
    passed = set(re.findall(r"(\w+) = var\.", user_data))
    assert passed == set(TEMPLATE_VARIABLES)
    used = set(re.findall(r"(?<!\$)\$\{(\w+)\}", USER_DATA_TEMPLATE))
    assert used == set(TEMPLATE_VARIABLES)
    assert "%{" not in USER_DATA_TEMPLATE  # template directives: this code does not render them


def test_terraform_renders_the_user_data_as_the_provider_does(tmp_path: Path) -> None:
    terraform = shutil.which("terraform")
    assert terraform is not None, "terraform (part of this machine image) is not on PATH"
    values = {
        "paddler_package": "paddler==0.1.0",
        "control_plane_url": "http://10.0.0.5:8060",
        "agent_token": "s3cret-$x",
        "pool": "smollm2",
        "model": "s3://paddler-models/models/a.gguf",
        "slots": 2,
    }
    arguments = ", ".join(f"{name} = {json.dumps(value)}" for name, value in values.items())
    expression = f'jsonencode(templatefile("{TEMPLATE}", {{{arguments}}}))\n'
    done = subprocess.run(
        [terraform, "console"],
        input=expression,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"TF_CLI_CONFIG_FILE": "/dev/null", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=60,
        check=True,
    )
    rendered_by_terraform = json.loads(json.loads(done.stdout))
    assert rendered_by_terraform == render(USER_DATA_TEMPLATE, values)


def test_model_bucket_is_private_encrypted_and_versioned(infra: Infra) -> None:
    block = infra.resources[("aws_s3_bucket_public_access_block", "models")]
    for setting in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        assert block[setting] is True, setting
    [ownership] = infra.resources[("aws_s3_bucket_ownership_controls", "models")]["rule"]
    assert ownership["object_ownership"] == "BucketOwnerEnforced"
    [versioning] = infra.resources[("aws_s3_bucket_versioning", "models")][
        "versioning_configuration"
    ]
    assert versioning["status"] == "Enabled"
    [rule] = infra.resources[("aws_s3_bucket_server_side_encryption_configuration", "models")][
        "rule"
    ]
    [default] = rule["apply_server_side_encryption_by_default"]
    assert default["sse_algorithm"] == "aws:kms"


def test_security_groups_open_only_the_two_ports(infra: Infra) -> None:
    ingress = {
        name: rule
        for (kind, name), rule in infra.resources.items()
        if kind == "aws_vpc_security_group_ingress_rule"
    }
    assert set(ingress) == {
        "management_from_agents",
        "inference_from_clients",
        "database_from_control_plane",
    }
    assert ingress["management_from_agents"]["from_port"] == "${var.management_port}"
    assert ingress["management_from_agents"]["referenced_security_group_id"] == (
        "${aws_security_group.agent.id}"
    )
    assert ingress["inference_from_clients"]["from_port"] == "${var.inference_port}"
    assert ingress["inference_from_clients"]["cidr_ipv4"] == "${each.value}"
    agent_egress = sorted(
        [
            (rule["from_port"], rule["to_port"])
            for (kind, _), rule in infra.resources.items()
            if kind == "aws_vpc_security_group_egress_rule"
            and rule["security_group_id"] == "${aws_security_group.agent.id}"
        ],
        key=str,
    )
    assert agent_egress == [("${var.management_port}", "${var.management_port}"), (443, 443)]
    assert not any(
        "cidr_ipv4" in rule
        for (kind, _), rule in infra.resources.items()
        if kind == "aws_vpc_security_group_egress_rule"
        and rule["security_group_id"] == "${aws_security_group.agent.id}"
    ), "agents reach S3 through the endpoint's prefix list, not the internet"
    agent_ingress = [
        rule
        for rule in ingress.values()
        if rule["security_group_id"] == "${aws_security_group.agent.id}"
    ]
    assert agent_ingress == []


def test_database_is_optional_and_encrypted(infra: Infra) -> None:
    database = infra.resources[("aws_db_instance", "paddler")]
    assert database["count"] == "${var.create_database ? 1 : 0}"
    assert infra.variables["create_database"]["default"] is False
    assert database["storage_encrypted"] is True
    assert database["publicly_accessible"] is False
