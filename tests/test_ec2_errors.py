"""EC2 errors classified (issue 14, finding 8): only InvalidInstanceID.NotFound means gone.

A real boto3 EC2 client answers every call here; what AWS would say comes from a botocore
``before-call`` hook, which stands in for AWS's answer (throttling, NotFound, a page of
instances): botocore then raises its own ``ClientError`` exactly as for a response from AWS,
and no request leaves the machine. Network failures are real: the client dials a closed port.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from control_plane.providers.base import AgentSpec, InstanceState, ProviderError
from control_plane.providers.ec2 import EC2Provider, EC2Settings
from control_plane.providers.ec2_errors import means_gone

SPEC = AgentSpec(pool="p", control_plane_url="http://10.0.0.5:8060", agent_token="t")
# What AWS answers per instance id asked about (one id per call), or for the whole batch.
Answer = Callable[[list[str]], tuple[int, dict[str, Any]]]


def aws_error(code: str, status: int = 400) -> tuple[int, dict[str, Any]]:
    return status, {"Error": {"Code": code, "Message": f"{code} (stand-in)"}}


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "stand-in"}}, "DescribeInstances")


def running(ids: list[str]) -> tuple[int, dict[str, Any]]:
    instances = [{"InstanceId": i, "State": {"Name": "running"}} for i in ids]
    return 200, {"Reservations": [{"Instances": instances}]}


@dataclass
class StandInAWS:
    """Answers each EC2 call through ``answer`` (per operation name) before it is sent."""

    answers: dict[str, Answer] = field(default_factory=dict)
    calls: list[tuple[str, list[str]]] = field(default_factory=list)

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        body = params.get("body") or {}
        ids = [value for key, value in sorted(body.items()) if key.startswith("InstanceId.")]
        self.calls.append((model.name, ids))
        status, parsed = self.answers[model.name](ids)
        return AWSResponse(params.get("url", ""), status, HTTPHeaders(), None), parsed


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def provider(aws: StandInAWS | None = None) -> EC2Provider:
    client = boto3.client(
        "ec2",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=2),
    )
    if aws is not None:
        client.meta.events.register("before-call.ec2", aws)
    return EC2Provider(EC2Settings(cluster="c"), client=client)


@pytest.mark.parametrize(
    ("error", "gone"),
    [
        (client_error("InvalidInstanceID.NotFound"), True),
        (client_error("RequestLimitExceeded"), False),
        (client_error("Throttling"), False),
        (client_error("InternalError"), False),
        (client_error("Unavailable"), False),
        (client_error("UnauthorizedOperation"), False),
        (client_error("InvalidInstanceID.Malformed"), False),
        (ClientError({}, "DescribeInstances"), False),
        (EndpointConnectionError(endpoint_url="http://ec2"), False),
        (ReadTimeoutError(endpoint_url="http://ec2"), False),
        (NoCredentialsError(), False),
    ],
)
def test_only_not_found_means_gone(error: ClientError | BotoCoreError, gone: bool) -> None:
    assert means_gone(error) is gone


@pytest.mark.parametrize("code", ["RequestLimitExceeded", "InternalError", "Unavailable"])
def test_a_failed_describe_is_unknown_not_terminated(code: str) -> None:
    aws = StandInAWS({"DescribeInstances": lambda ids: aws_error(code, 503)})
    with pytest.raises(ProviderError, match=code):
        provider(aws).describe(["i-1", "i-2"])


def test_an_unknown_id_is_terminated_and_the_others_keep_their_state() -> None:
    def describe(ids: list[str]) -> tuple[int, dict[str, Any]]:
        if "i-gone" in ids:
            return aws_error("InvalidInstanceID.NotFound")
        return running(ids)

    aws = StandInAWS({"DescribeInstances": describe})
    statuses = provider(aws).describe(["i-1", "i-gone", "i-2"])
    assert {pid: status.state for pid, status in statuses.items()} == {
        "i-1": InstanceState.RUNNING,
        "i-gone": InstanceState.TERMINATED,
        "i-2": InstanceState.RUNNING,
    }
    assert aws.calls[0] == ("DescribeInstances", ["i-1", "i-gone", "i-2"])  # then one by one


def test_a_throttle_while_asking_one_by_one_is_unknown_too() -> None:
    """The old fallback swallowed these errors: every instance read as terminated."""

    def describe(ids: list[str]) -> tuple[int, dict[str, Any]]:
        if len(ids) > 1:
            return aws_error("InvalidInstanceID.NotFound")
        return aws_error("RequestLimitExceeded", 503)

    aws = StandInAWS({"DescribeInstances": describe})
    with pytest.raises(ProviderError, match="RequestLimitExceeded"):
        provider(aws).describe(["i-1", "i-gone"])


def test_an_unreachable_endpoint_is_unknown() -> None:
    with pytest.raises(ProviderError, match="DescribeInstances failed"):
        provider().describe(["i-1"])
    with pytest.raises(ProviderError, match="DescribeInstances failed"):
        provider().list_instances()


def test_terminate_an_instance_that_is_gone_is_done_any_other_failure_is_an_error() -> None:
    gone = StandInAWS({"TerminateInstances": lambda ids: aws_error("InvalidInstanceID.NotFound")})
    provider(gone).terminate("i-1")
    throttled = StandInAWS({"TerminateInstances": lambda ids: aws_error("RequestLimitExceeded")})
    with pytest.raises(ProviderError, match="RequestLimitExceeded"):
        provider(throttled).terminate("i-1")
    with pytest.raises(ProviderError, match="TerminateInstances i-1 failed"):
        provider().terminate("i-1")


def test_launch_errors_below_the_api_are_provider_errors() -> None:
    with pytest.raises(ProviderError, match="RunInstances failed"):
        provider().launch(SPEC)
