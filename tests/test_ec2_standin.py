"""The ec2 provider end to end on LocalStack: instances it launches become agents (through the
VM stand-in) that join a real control plane under their instance ids, and leave when the
provider terminates the instances."""

from __future__ import annotations

import uuid
from pathlib import Path

from control_plane.providers.base import AgentSpec
from control_plane.providers.ec2 import EC2Provider, EC2Settings
from tests.localstack_fixtures import LocalStack, localstack
from tests.processes import AGENT_TOKEN, ControlPlane, wait_until
from tests.vm_standin import VMStandIn

__all__ = ["localstack"]  # the session fixture, imported for pytest


def test_launched_instances_join_and_leave_the_fleet(
    localstack: LocalStack, control_plane: ControlPlane, tmp_path: Path
) -> None:
    cluster = f"standin-{uuid.uuid4().hex[:8]}"
    provider = EC2Provider(EC2Settings(cluster=cluster), client=localstack.client("ec2"))
    spec = AgentSpec(
        pool="smollm2",
        control_plane_url=control_plane.management_url,
        agent_token=AGENT_TOKEN,
        model=localstack.seeded["model_url"],
        slots=1,
    )
    with VMStandIn(localstack.client("ec2"), cluster, tmp_path) as vms:  # they fetch it from S3
        records = provider.launch(spec, count=2)
        ids = sorted(record.provider_id for record in records)

        def joined() -> bool:
            ready = [a for a in control_plane.agents() if a["connected"] and a["state"] == "ready"]
            return sorted(a["instance_id"] for a in ready) == ids

        wait_until(joined, timeout=60, what=f"instances {ids} to join\n{control_plane.log()}")
        assert sorted(a["name"] for a in control_plane.agents()) == ids
        assert {a["pool"] for a in control_plane.agents()} == {"smollm2"}

        gone, kept = ids
        provider.terminate(gone)
        wait_until(
            lambda: [a["instance_id"] for a in control_plane.agents() if a["connected"]] == [kept],
            timeout=20,
            what=f"the agent of terminated {gone} to leave",
        )
        provider.terminate(kept)
        wait_until(
            lambda: not any(a["connected"] for a in control_plane.agents()),
            timeout=20,
            what="every agent to leave",
        )
        assert sorted(vms.booted) == ids
