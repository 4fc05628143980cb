"""The autoscaler on LocalStack: the control plane's ec2 provider launches instances there, and
the VM stand-in boots their agents from the user data.

- scale from zero: the held request is served, the idle instance is terminated again;
- boot timeout: instances whose agent never dials in (no stand-in: LocalStack boots nothing)
  are terminated and replaced, then the pool answers 503 ``capacity_unavailable``;
- a control plane restarted while its instance boots launches no second one: it finds the
  instance by its database row or, with the database lost, by its tags (adopted).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import openai
import pytest

from control_plane.providers.ec2 import CLUSTER_TAG, POOL_TAG
from tests.autoscaler_helpers import (
    client,
    ec2_plane,
    management,
    scaling_actions,
    sql,
    stream_text,
)
from tests.localstack_fixtures import LocalStack, localstack
from tests.processes import ControlPlane, wait_until
from tests.test_metrics import scrape, value
from tests.vm_standin import VMStandIn

__all__ = ["localstack"]  # the session fixture, imported for pytest

POOL = "tiny-llama"


def cluster_instances(ec2: Any, cluster: str) -> list[dict[str, Any]]:
    reservations = ec2.describe_instances(
        Filters=[{"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster]}]
    )["Reservations"]
    return [instance for r in reservations for instance in r["Instances"]]


ENDED = ("shutting-down", "terminated")


def cluster_of(plane: ControlPlane) -> str:
    return plane.args[plane.args.index("--cluster") + 1]


@pytest.fixture
def ec2(localstack: LocalStack) -> Any:
    return localstack.client("ec2")


def terminate_cluster(ec2: Any, cluster: str) -> None:
    """End what a test left running in its cluster (a stopped control plane leaves them)."""
    leftovers = [
        i["InstanceId"] for i in cluster_instances(ec2, cluster) if i["State"]["Name"] not in ENDED
    ]
    if leftovers:
        ec2.terminate_instances(InstanceIds=leftovers)


def test_scale_from_zero_on_localstack(
    localstack: LocalStack, ec2: Any, tiny_model_path: Path, tmp_path: Path
) -> None:
    timers = ("--scale-down-after", "2", "--boot-timeout", "60")
    plane = ec2_plane(localstack, tmp_path, tiny_model_path, *timers)
    cluster = cluster_of(plane)
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
                return bool(described["State"]["Name"] in ENDED)

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


def test_instances_whose_agent_never_dials_in_are_replaced_then_requests_get_503(
    localstack: LocalStack, ec2: Any, tiny_model_path: Path, tmp_path: Path
) -> None:
    timers = ("--boot-timeout", "2", "--max-boot-attempts", "2")
    plane = ec2_plane(localstack, tmp_path, tiny_model_path, *timers)
    cluster = cluster_of(plane)
    plane.start()  # and no VM stand-in: LocalStack's machines run, but boot no agent
    try:
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as raised:
            client(plane).chat.completions.create(
                model=POOL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
            )
        waited = time.monotonic() - started
        assert raised.value.status_code == 503
        assert raised.value.code == "capacity_unavailable"
        assert waited < 20, f"waited {waited:.1f}s: the buffer timeout is 60s"

        # the event is written once the waiting requests have been answered
        wait_until(lambda: "mark_failing" in scaling_actions(tmp_path), what="the event in SQL")
        actions = scaling_actions(tmp_path)
        assert actions.count("launch") == 2 and actions.count("replace") == 2, actions
        assert actions[-1] == "mark_failing", actions
        described = cluster_instances(ec2, cluster)  # two RunInstances, two TerminateInstances
        assert len(described) == 2
        assert all(instance["State"]["Name"] in ENDED for instance in described)
        rows = management(plane, "/api/v1/instances")["data"]
        assert {row["provider_id"] for row in rows} == {i["InstanceId"] for i in described}
        assert all(row["state"] == "terminated" for row in rows)
        assert all("did not register within 2s" in row["reason"] for row in rows)
        assert management(plane, "/api/v1/instances")["autoscaler"]["failing"] is True

        samples = scrape(plane)
        assert value(samples, "paddler_scaling_actions_total", pool=POOL, action="replace") == 2
        phase = {"pool": POOL, "phase": "running"}
        assert value(samples, "paddler_cold_start_seconds_count", **phase) == 2
        phase["phase"] = "registered"
        assert value(samples, "paddler_cold_start_seconds_count", **phase) == 0
    finally:
        plane.stop()
        terminate_cluster(ec2, cluster)


@pytest.mark.parametrize("database", ["kept", "lost"])
def test_a_control_plane_restarted_while_an_instance_boots_launches_no_second_one(
    localstack: LocalStack, ec2: Any, tiny_model_path: Path, tmp_path: Path, database: str
) -> None:
    plane = ec2_plane(
        localstack, tmp_path, tiny_model_path, *("--min-agents", "1", "--boot-timeout", "60")
    )
    cluster = cluster_of(plane)
    plane.start()
    try:
        # No stand-in yet: the instance stays booting (its agent has not dialed in).
        wait_until(lambda: len(cluster_instances(ec2, cluster)) == 1, what="the min_agents launch")
        [instance_id] = [i["InstanceId"] for i in cluster_instances(ec2, cluster)]
        wait_until(lambda: sql(tmp_path, "SELECT count(*) FROM instances") == [(1,)])
        plane.stop()
        assert sql(tmp_path, "SELECT provider_id, state FROM instances") == [
            (instance_id, "booting")
        ]
        if database == "lost":
            for path in (tmp_path / "state").glob("state.db*"):  # with its -wal and -shm
                path.unlink()

        plane.start()
        time.sleep(2)  # a few ticks: a duplicate launch would happen now
        assert [i["InstanceId"] for i in cluster_instances(ec2, cluster)] == [instance_id]
        expected = ["launch"] if database == "kept" else ["adopt"]
        assert scaling_actions(tmp_path) == expected

        with VMStandIn(ec2, cluster, tmp_path) as vms:  # the machine finishes booting
            wait_until(
                lambda: management(plane, "/api/v1/instances")["data"][0]["state"] == "ready",
                timeout=60,
                what=f"the instance ready\n{plane.log()}",
            )
            assert vms.booted == [instance_id]
            assert stream_text(plane, POOL).strip()
            [row] = management(plane, "/api/v1/instances")["data"]
            assert row["provider_id"] == instance_id
            assert [i["InstanceId"] for i in cluster_instances(ec2, cluster)] == [instance_id]
            assert scaling_actions(tmp_path) == expected
    finally:
        plane.stop()
        terminate_cluster(ec2, cluster)
