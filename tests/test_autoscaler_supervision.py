"""The autoscaler outlives its provider's failures (issue 14, finding 8), on a real LocalStack.

A control plane runs in-process with the ec2 provider, its min_agents 1:

- EC2 unreachable at start (the provider's client dials a closed port, as when LocalStack or
  the AWS endpoint is down): reconciling fails, is retried with backoff, and the loop lives on;
  once EC2 answers (the client is pointed at LocalStack), it reconciles and launches;
- DescribeInstances throttled (``RequestLimitExceeded``, which LocalStack never answers: a
  botocore hook stands in for AWS's answer, the client's calls are otherwise real): the booting
  instance keeps its state, no boot counts as failed, nothing is relaunched; once EC2 answers
  again the instance is seen running.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.config import Config

from control_plane.autoscaler.loop import PoolAutoscaler
from control_plane.providers.ec2 import EC2Provider
from control_plane.settings import ControlPlaneSettings
from control_plane.state import ControlPlane
from tests.localstack_fixtures import LocalStack, localstack
from tests.processes import free_port

__all__ = ["localstack"]  # the session fixture, imported for pytest


@dataclass
class Throttle:
    """Answers DescribeInstances with AWS's throttling error while ``on``."""

    on: bool = False
    answered: int = 0

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        if not self.on or model.name != "DescribeInstances":
            return None
        self.answered += 1
        error = {"Error": {"Code": "RequestLimitExceeded", "Message": "Request limit exceeded."}}
        return AWSResponse(params.get("url", ""), 503, HTTPHeaders(), None), error


def ec2_client(endpoint: str) -> Any:
    return boto3.client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=10),
    )


async def eventually(check: Callable[[], bool], what: str, within: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def events(state: ControlPlane) -> list[str]:
    return [event.action for event in await state.autoscaling.store.list_events(None, limit=100)]


async def test_ec2_down_at_start_then_throttled_never_ends_or_misleads_autoscaling(
    localstack: LocalStack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="paddler")
    settings = ControlPlaneSettings(
        state_dir=tmp_path,
        admin_token="admin",
        agent_token="agent",
        provider="ec2",
        cluster=f"supervision-{uuid.uuid4().hex[:8]}",
        min_agents=1,
        max_agents=1,
        agent_model="s3://paddler-models/models/SmolLM2-135M-Instruct.Q4_1.gguf",
        agent_pool="smollm2",
        agent_control_plane_url="http://10.0.0.5:8060",
    )
    state = ControlPlane(settings)
    configured = state.autoscaling.provider
    assert isinstance(configured, EC2Provider)
    unreachable = ec2_client(f"http://127.0.0.1:{free_port()}")
    provider = state.autoscaling.provider = EC2Provider(configured.settings, unreachable)
    state.autoscaling.terminate_on_exit = True
    await state.start()
    pool = state.autoscaling.pool
    assert isinstance(pool, PoolAutoscaler)
    pool.loop_backoff.first = pool.describe_backoff.first = 0.2
    task = state.autoscaling._task
    assert task is not None
    try:
        await eventually(lambda: pool.loop_backoff.failures >= 3, "three failed reconciles")
        assert not task.done()
        assert pool.machines() == 0 and await events(state) == []
        assert "Could not connect to the endpoint" in (
            state.autoscaling.status()["provider_error"] or ""
        )

        throttle = Throttle()
        live = localstack.client("ec2")
        live.meta.events.register("before-call.ec2", throttle)
        provider.client = live  # EC2 answers again
        await eventually(lambda: pool.machines() == 1, "a launch once EC2 answers")
        [instance_id] = list(pool.instances.rows)
        assert state.autoscaling.status()["provider_error"] is None

        throttle.on = True
        await eventually(lambda: pool.describe_backoff.failures >= 3, "three throttled describes")
        assert list(pool.instances.rows) == [instance_id]
        assert pool.instances.rows[instance_id].state == "booting"
        assert pool.failed_boots == 0
        assert await events(state) == ["launch"]
        assert "RequestLimitExceeded" in (state.autoscaling.status()["provider_error"] or "")

        throttle.on = False
        await eventually(
            lambda: pool.instances.rows[instance_id].running_at is not None,
            "the instance seen running",
        )
        assert await events(state) == ["launch"]
        assert not task.done()
        assert "reconciling with the provider failed" in caplog.text
        assert "keeping their states" in caplog.text
    finally:
        state.closing.set()
        await state.stop()
    terminated = live.describe_instances(InstanceIds=[instance_id])["Reservations"]
    assert terminated[0]["Instances"][0]["State"]["Name"] in ("shutting-down", "terminated")
