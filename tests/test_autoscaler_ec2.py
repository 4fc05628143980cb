"""Scale from zero on LocalStack: the control plane's ec2 provider launches an instance, the
VM stand-in boots its agent from the user data, the held request is served, and the idle
instance is terminated again."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from control_plane.providers.ec2 import CLUSTER_TAG, POOL_TAG
from tests.autoscaler_helpers import autoscaled_plane, management, scaling_actions, stream_text
from tests.localstack_fixtures import LocalStack, localstack
from tests.processes import wait_until
from tests.vm_standin import VMStandIn

__all__ = ["localstack"]  # the session fixture, imported for pytest

POOL = "tiny-llama"


def cluster_instances(ec2: Any, cluster: str) -> list[dict[str, Any]]:
    reservations = ec2.describe_instances(
        Filters=[{"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster]}]
    )["Reservations"]
    return [instance for r in reservations for instance in r["Instances"]]


def test_scale_from_zero_on_localstack(
    localstack: LocalStack, tiny_model_path: Path, tmp_path: Path
) -> None:
    plane = autoscaled_plane(
        tmp_path,
        tiny_model_path,
        *("--provider", "ec2", "--ec2-endpoint-url", localstack.endpoint),
        *("--ec2-region", localstack.region, "--scale-down-after", "2", "--boot-timeout", "60"),
    )
    cluster = plane.args[plane.args.index("--cluster") + 1]
    plane.env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": localstack.region,
    }
    ec2 = localstack.client("ec2")
    with VMStandIn(ec2, cluster, tmp_path) as vms:
        plane.start()
        try:
            assert cluster_instances(ec2, cluster) == []

            started = time.monotonic()
            assert stream_text(plane, POOL).strip()
            served_after = time.monotonic() - started

            [instance] = cluster_instances(ec2, cluster)  # one RunInstances, seen by LocalStack
            instance_id = instance["InstanceId"]
            tags = {tag["Key"]: tag["Value"] for tag in instance["Tags"]}
            assert tags[POOL_TAG] == POOL
            assert vms.booted == [instance_id]
            wait_until(lambda: management(plane, "/api/v1/instances")["data"][0]["first_token_at"])
            [row] = management(plane, "/api/v1/instances")["data"]
            assert row["provider"] == "ec2" and row["provider_id"] == instance_id
            breakdown = row["cold_start_seconds"]
            assert 0 <= breakdown["registered"] <= breakdown["model_loaded"] <= served_after

            def terminated() -> bool:
                [described] = cluster_instances(ec2, cluster)
                return bool(described["State"]["Name"] in ("shutting-down", "terminated"))

            wait_until(terminated, timeout=30, what=f"the idle instance terminated\n{plane.log()}")
            wait_until(lambda: instance_id not in vms.agents, what="the stand-in to stop its agent")
            # the control plane records the termination once TerminateInstances has returned
            wait_until(lambda: "terminate" in scaling_actions(tmp_path), what="the event in SQL")
            actions = scaling_actions(tmp_path)
            assert actions == ["launch", "drain", "terminate"], actions
            [row] = management(plane, "/api/v1/instances")["data"]
            assert row["state"] == "terminated"
            assert "scaled down" in row["reason"]
        finally:
            plane.stop()
