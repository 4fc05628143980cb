"""The ec2 provider against a real LocalStack (EC2 and S3 APIs), started by the fixture."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from control_plane.providers.base import AgentSpec, InstanceState, InstanceStatus, ProviderError
from control_plane.providers.ec2 import (
    CLUSTER_TAG,
    DEFAULT_LAUNCH_TEMPLATE,
    EC2_ACTIONS,
    POOL_TAG,
    EC2Provider,
    EC2Settings,
)
from control_plane.providers.user_data import agent_environment, render_agent_user_data
from tests.localstack_fixtures import LocalStack, localstack

__all__ = ["localstack"]  # the session fixture, imported for pytest

SPEC = AgentSpec(
    pool="smollm2",
    control_plane_url="http://10.0.0.5:8060",
    agent_token="agent-secret",
    model="s3://paddler-models/models/SmolLM2-135M-Instruct.Q4_1.gguf",
    slots=2,
)


@dataclass
class CallLog:
    """Every EC2 operation a client sent, seen through botocore's own event hooks."""

    operations: list[str] = field(default_factory=list)

    def __call__(self, model: Any, **_: Any) -> None:
        self.operations.append(f"ec2:{model.name}")


@dataclass
class RefuseSpot:
    """Stands in for AWS refusing spot capacity (InsufficientInstanceCapacity), which LocalStack
    never does: it answers a spot RunInstances with that error before the request leaves the
    client. Every other request, including the on-demand retry, goes to the real LocalStack."""

    code: str = "InsufficientInstanceCapacity"
    refused: int = 0

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        body = params.get("body") or {}
        if model.name != "RunInstances" or "InstanceMarketOptions.MarketType" not in body:
            return None
        self.refused += 1
        error = {"Error": {"Code": self.code, "Message": "There is no Spot capacity available."}}
        return AWSResponse(params.get("url", ""), 500, HTTPHeaders(), None), error


@pytest.fixture
def ec2(localstack: LocalStack) -> Iterator[tuple[Any, CallLog]]:
    """An EC2 client whose every call is recorded; the test ends by checking the calls."""
    client = localstack.client("ec2")
    calls = CallLog()
    client.meta.events.register("before-call.ec2", calls)
    yield client, calls
    assert calls.operations, "the provider made no EC2 call"
    unlisted = sorted(set(calls.operations) - set(EC2_ACTIONS))
    assert not unlisted, f"EC2 calls missing from EC2_ACTIONS (and the IAM policy): {unlisted}"


def cluster() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def tags_of(instance: Any) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


def described(localstack: LocalStack, instance_ids: list[str]) -> dict[str, Any]:
    client = localstack.client("ec2")
    reservations = client.describe_instances(InstanceIds=instance_ids)["Reservations"]
    return {i["InstanceId"]: i for r in reservations for i in r["Instances"]}


def user_data_of(localstack: LocalStack, instance_id: str) -> str:
    attribute = localstack.client("ec2").describe_instance_attribute(
        InstanceId=instance_id, Attribute="userData"
    )
    return base64.b64decode(attribute["UserData"]["Value"]).decode()


def test_launch_list_and_terminate_from_the_launch_template(
    localstack: LocalStack, ec2: tuple[Any, CallLog]
) -> None:
    client, calls = ec2
    provider = EC2Provider(EC2Settings(cluster=cluster()), client=client)
    other = EC2Provider(EC2Settings(cluster=cluster()), client=client)
    assert provider.settings.launch_template == DEFAULT_LAUNCH_TEMPLATE

    records = provider.launch(SPEC, count=2)
    stranger = other.launch(SPEC)[0]

    assert len(records) == 2
    assert {r.pool for r in records} == {"smollm2"}
    assert {r.market for r in records} == {"on-demand"}
    instances = described(localstack, [r.provider_id for r in records])
    template = localstack.client("ec2").describe_launch_templates(
        LaunchTemplateNames=[DEFAULT_LAUNCH_TEMPLATE]
    )["LaunchTemplates"][0]
    for record in records:
        instance = instances[record.provider_id]
        assert tags_of(instance)[CLUSTER_TAG] == provider.cluster
        assert tags_of(instance)[POOL_TAG] == "smollm2"
        assert tags_of(instance)["aws:ec2launchtemplate:id"] == template["LaunchTemplateId"]
        user_data = user_data_of(localstack, record.provider_id)
        assert user_data == render_agent_user_data(
            control_plane_url=SPEC.control_plane_url,
            agent_token=SPEC.agent_token,
            pool=SPEC.pool,
            model=SPEC.model,
            slots=SPEC.slots,
        )
        assert agent_environment(user_data) == {
            "PADDLER_CONTROL_PLANE": "http://10.0.0.5:8060",
            "PADDLER_TOKEN": "agent-secret",
            "PADDLER_POOL": "smollm2",
            "PADDLER_MODEL": SPEC.model,
            "PADDLER_SLOTS": "2",
        }

    listed = provider.list_instances()
    assert sorted(r.provider_id for r in listed) == sorted(r.provider_id for r in records)
    assert {r.state for r in listed} <= {InstanceState.PENDING, InstanceState.RUNNING}
    assert provider.list_instances(pool="smollm2") == listed
    assert provider.list_instances(pool="another-pool") == []
    assert [r.provider_id for r in other.list_instances()] == [stranger.provider_id]

    gone, kept = records
    provider.terminate(gone.provider_id)
    provider.terminate(gone.provider_id)  # again: not an error
    statuses = provider.describe([gone.provider_id, kept.provider_id, "i-0123456789abcdef0"])
    assert statuses[gone.provider_id] == InstanceStatus(  # AWS's StateReason says why
        InstanceState.TERMINATED, "Client.UserInitiatedShutdown: User initiated shutdown"
    )
    assert statuses[kept.provider_id] in (
        InstanceStatus(InstanceState.PENDING),
        InstanceStatus(InstanceState.RUNNING),
    )
    assert statuses["i-0123456789abcdef0"] == InstanceStatus(InstanceState.TERMINATED)
    assert [r.provider_id for r in provider.list_instances()] == [kept.provider_id]

    for record in (kept, stranger):
        provider.terminate(record.provider_id)
    assert provider.list_instances() == [] and other.list_instances() == []
    assert set(calls.operations) == set(EC2_ACTIONS) - {"ec2:CreateTags"}


def test_launch_from_an_image_with_network_and_instance_profile(
    localstack: LocalStack, ec2: tuple[Any, CallLog]
) -> None:
    client, _ = ec2
    setup = localstack.client("ec2")
    vpc = setup.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnet = setup.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
    group = setup.create_security_group(
        GroupName=f"agents-{uuid.uuid4().hex[:6]}", Description="agents", VpcId=vpc
    )["GroupId"]
    iam = localstack.client("iam")
    profile = f"paddler-agent-{uuid.uuid4().hex[:6]}"
    iam.create_instance_profile(InstanceProfileName=profile)
    image = setup.describe_images()["Images"][1]["ImageId"]
    settings = EC2Settings(
        cluster=cluster(),
        launch_template=None,
        image_id=image,
        instance_type="t3.small",
        subnet_id=subnet,
        security_group_ids=(group,),
        instance_profile=profile,
        extra_tags={"team": "ml"},
    )
    provider = EC2Provider(settings, client=client)

    [record] = provider.launch(SPEC)

    instance = described(localstack, [record.provider_id])[record.provider_id]
    assert instance["ImageId"] == image
    assert instance["InstanceType"] == "t3.small"
    assert instance["SubnetId"] == subnet
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [group]
    assert instance["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{profile}")
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert tags_of(instance)[CLUSTER_TAG] == settings.cluster
    assert tags_of(instance)["team"] == "ml"
    provider.terminate(record.provider_id)


def test_spot_launch(localstack: LocalStack, ec2: tuple[Any, CallLog]) -> None:
    client, calls = ec2
    provider = EC2Provider(EC2Settings(cluster=cluster(), spot=True), client=client)

    [record] = provider.launch(SPEC)

    assert record.market == "spot"
    instance = described(localstack, [record.provider_id])[record.provider_id]
    assert instance["InstanceLifecycle"] == "spot"
    assert calls.operations.count("ec2:RunInstances") == 1
    provider.terminate(record.provider_id)


@pytest.mark.parametrize("code", ["InsufficientInstanceCapacity", "SpotMaxPriceTooLow"])
def test_spot_refused_falls_back_to_on_demand(
    localstack: LocalStack, ec2: tuple[Any, CallLog], code: str
) -> None:
    client, calls = ec2
    refuse = RefuseSpot(code)
    client.meta.events.register("before-call.ec2", refuse)  # after the call log
    provider = EC2Provider(EC2Settings(cluster=cluster(), spot=True), client=client)

    [record] = provider.launch(SPEC)

    assert refuse.refused == 1
    assert calls.operations.count("ec2:RunInstances") == 2  # spot, refused; then on demand
    assert record.market == "on-demand"
    instance = described(localstack, [record.provider_id])[record.provider_id]
    assert "InstanceLifecycle" not in instance
    assert tags_of(instance)[POOL_TAG] == "smollm2"
    provider.terminate(record.provider_id)


def test_spot_refused_without_fallback_is_an_error(
    localstack: LocalStack, ec2: tuple[Any, CallLog]
) -> None:
    client, _ = ec2
    client.meta.events.register("before-call.ec2", RefuseSpot())
    settings = EC2Settings(cluster=cluster(), spot=True, spot_fallback_to_on_demand=False)
    provider = EC2Provider(settings, client=client)

    with pytest.raises(ProviderError, match="InsufficientInstanceCapacity"):
        provider.launch(SPEC)
    assert provider.list_instances() == []


def test_other_launch_errors_are_not_retried(
    localstack: LocalStack, ec2: tuple[Any, CallLog]
) -> None:
    client, calls = ec2
    settings = EC2Settings(cluster=cluster(), launch_template="no-such-template", spot=True)
    provider = EC2Provider(settings, client=client)

    with pytest.raises(ProviderError, match="InvalidLaunchTemplateName"):
        provider.launch(SPEC)
    assert calls.operations.count("ec2:RunInstances") == 1


def test_seeded_model_can_be_fetched_back(localstack: LocalStack) -> None:
    seeded = localstack.seeded
    s3 = localstack.client("s3")
    body = s3.get_object(Bucket=seeded["bucket"], Key=seeded["model_key"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == seeded["model_sha256"]
    assert body[:4] == b"GGUF"
    head = s3.head_object(Bucket=seeded["bucket"], Key=seeded["model_key"])
    assert head["Metadata"]["sha256"] == seeded["model_sha256"]
    versioning = s3.get_bucket_versioning(Bucket=seeded["bucket"])
    assert versioning["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket=seeded["bucket"])
    assert all(block["PublicAccessBlockConfiguration"].values())


def test_settings_are_checked_up_front() -> None:
    with pytest.raises(ValueError, match="cluster"):
        EC2Settings(cluster="")
    with pytest.raises(ValueError, match="image_id"):
        EC2Settings(cluster="c", launch_template=None)
    with pytest.raises(ValueError, match="paddler:cluster"):
        EC2Settings(cluster="c", extra_tags={CLUSTER_TAG: "other"})
    with pytest.raises(ValueError, match="line break"):
        AgentSpec(pool="p", control_plane_url="http://x\nrm -rf /", agent_token="t")
