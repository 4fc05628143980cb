"""The ``ec2`` provider: agents on EC2 instances, through boto3.

RunInstances from a launch template (or an AMI, instance type, subnet, security groups and
instance profile), with user data that starts the agent (``user_data.py``) and the tags
``paddler:cluster`` and ``paddler:pool``; TerminateInstances; DescribeInstances by the cluster
tag to reconcile. Optionally spot, falling back to on-demand when AWS refuses spot capacity.

Every EC2 API action this module calls is listed in ``EC2_ACTIONS``; the IAM policy in
``infra/iam.tf`` must allow exactly these (``tests/test_infra.py``), and the LocalStack tests
record every call the provider's client makes and check it against the list.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from control_plane.providers.base import (
    AgentSpec,
    InstanceRecord,
    InstanceState,
    InstanceStatus,
    ProviderError,
)
from control_plane.providers.ec2_errors import (
    NOT_FOUND,
    InstancesNotFound,
    error_code,
    means_gone,
)
from control_plane.providers.user_data import render_agent_user_data

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import InstanceTypeDef, RunInstancesRequestTypeDef, TagTypeDef

logger = logging.getLogger("paddler.providers.ec2")

CLUSTER_TAG = "paddler:cluster"
POOL_TAG = "paddler:pool"
DEFAULT_LAUNCH_TEMPLATE = "paddler-agent"

# Every EC2 action the provider needs. ec2:CreateTags is never called directly: AWS requires it
# to tag instances at launch (RunInstances with TagSpecifications).
EC2_ACTIONS = (
    "ec2:CreateTags",
    "ec2:DescribeInstances",
    "ec2:RunInstances",
    "ec2:TerminateInstances",
)

# Error codes with which AWS refuses spot capacity; the launch is retried on demand.
SPOT_REFUSALS = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "InsufficientSpotInstanceCapacity",
        "UnfulfillableCapacity",
    }
)

_STATES = {
    "pending": InstanceState.PENDING,
    "running": InstanceState.RUNNING,
    "stopping": InstanceState.STOPPED,
    "stopped": InstanceState.STOPPED,
    "shutting-down": InstanceState.TERMINATED,
    "terminated": InstanceState.TERMINATED,
}
_LIVE_STATES = ["pending", "running", "stopping", "stopped"]


@dataclass(frozen=True)
class EC2Settings:
    cluster: str
    region: str = "us-east-1"
    endpoint_url: str | None = None  # e.g. LocalStack's http://127.0.0.1:4566
    launch_template: str | None = DEFAULT_LAUNCH_TEMPLATE  # None: launch from image_id
    launch_template_version: str = "$Latest"
    image_id: str | None = None
    instance_type: str | None = None
    subnet_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    instance_profile: str | None = None  # name or ARN
    spot: bool = False
    spot_fallback_to_on_demand: bool = True
    paddler_package: str = "paddler"
    extra_tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.cluster:
            raise ValueError("the ec2 provider needs a cluster name")
        if self.launch_template is None and not (self.image_id and self.instance_type):
            raise ValueError("give a launch template, or an image_id and an instance_type")
        reserved = {CLUSTER_TAG, POOL_TAG, "Name"} & set(self.extra_tags)
        if reserved:
            raise ValueError(f"extra_tags cannot set {', '.join(sorted(reserved))}")


class EC2Provider:
    name = "ec2"

    def __init__(self, settings: EC2Settings, client: EC2Client | None = None) -> None:
        self.settings = settings
        self.cluster = settings.cluster
        self.client: EC2Client = client or boto3.client(
            "ec2", region_name=settings.region, endpoint_url=settings.endpoint_url
        )

    def launch(self, spec: AgentSpec, count: int = 1) -> list[InstanceRecord]:
        if count <= 0:
            raise ValueError(f"count must be greater than 0, got {count}")
        request = self._run_request(spec, count)
        if self.settings.spot:
            spot_request: RunInstancesRequestTypeDef = {
                **request,
                "InstanceMarketOptions": {
                    "MarketType": "spot",
                    "SpotOptions": {
                        "SpotInstanceType": "one-time",
                        "InstanceInterruptionBehavior": "terminate",
                    },
                },
            }
            try:
                return self._run(spot_request, spec.pool)
            except ClientError as error:
                code = error_code(error)
                if code not in SPOT_REFUSALS or not self.settings.spot_fallback_to_on_demand:
                    raise ProviderError(f"RunInstances (spot) failed: {error}") from error
                logger.warning("spot capacity refused (%s); launching on demand", code)
            except BotoCoreError as error:
                raise ProviderError(f"RunInstances (spot) failed: {error}") from error
        try:
            return self._run(request, spec.pool)
        except (ClientError, BotoCoreError) as error:
            raise ProviderError(f"RunInstances failed: {error}") from error

    def terminate(self, provider_id: str) -> None:
        try:
            self.client.terminate_instances(InstanceIds=[provider_id])
        except (ClientError, BotoCoreError) as error:
            if means_gone(error):
                return
            raise ProviderError(f"TerminateInstances {provider_id} failed: {error}") from error

    def list_instances(self, pool: str | None = None) -> list[InstanceRecord]:
        filters: list[Any] = [
            {"Name": f"tag:{CLUSTER_TAG}", "Values": [self.cluster]},
            {"Name": "instance-state-name", "Values": _LIVE_STATES},
        ]
        if pool is not None:
            filters.append({"Name": f"tag:{POOL_TAG}", "Values": [pool]})
        return [self._record(instance) for instance in self._describe(Filters=filters)]

    def describe(self, provider_ids: Sequence[str]) -> dict[str, InstanceStatus]:
        """Only ``InvalidInstanceID.NotFound`` makes an instance TERMINATED; any other failure
        (throttling, a network error, an outage) raises ``ProviderError``: the state is then
        unknown, and the caller keeps what it knew."""
        statuses = dict.fromkeys(provider_ids, InstanceStatus(InstanceState.TERMINATED))
        if not provider_ids:
            return statuses
        try:
            found = self._describe(InstanceIds=list(provider_ids))
        except InstancesNotFound:
            # One unknown id fails the whole call: ask one by one.
            found = []
            for provider_id in provider_ids:
                try:
                    found += self._describe(InstanceIds=[provider_id])
                except InstancesNotFound:
                    logger.info("%s: EC2 does not know it (%s)", provider_id, NOT_FOUND)
        for instance in found:
            statuses[instance["InstanceId"]] = _status(instance)
        return statuses

    def _run_request(self, spec: AgentSpec, count: int) -> RunInstancesRequestTypeDef:
        settings = self.settings
        extra: list[TagTypeDef] = [
            {"Key": key, "Value": value} for key, value in settings.extra_tags.items()
        ]
        tags: list[TagTypeDef] = [
            *extra,
            {"Key": CLUSTER_TAG, "Value": self.cluster},
            {"Key": POOL_TAG, "Value": spec.pool},
            {"Key": "Name", "Value": f"paddler-{self.cluster}-{spec.pool}"},
        ]
        request: RunInstancesRequestTypeDef = {
            "MinCount": count,
            "MaxCount": count,
            "UserData": render_agent_user_data(
                control_plane_url=spec.control_plane_url,
                agent_token=spec.agent_token,
                pool=spec.pool,
                model=spec.model,
                slots=spec.slots,
                paddler_package=settings.paddler_package,
            ),
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
        }
        if settings.launch_template:
            request["LaunchTemplate"] = {
                "LaunchTemplateName": settings.launch_template,
                "Version": settings.launch_template_version,
            }
        if settings.image_id:
            request["ImageId"] = settings.image_id
        if settings.instance_type:
            request["InstanceType"] = settings.instance_type  # type: ignore[typeddict-item]
        if settings.subnet_id:
            request["SubnetId"] = settings.subnet_id
        if settings.security_group_ids:
            request["SecurityGroupIds"] = list(settings.security_group_ids)
        if settings.instance_profile:
            profile = settings.instance_profile
            request["IamInstanceProfile"] = (
                {"Arn": profile} if profile.startswith("arn:") else {"Name": profile}
            )
        if not settings.launch_template:
            request["MetadataOptions"] = {"HttpTokens": "required", "HttpEndpoint": "enabled"}
        return request

    def _run(self, request: RunInstancesRequestTypeDef, pool: str) -> list[InstanceRecord]:
        response = self.client.run_instances(**request)
        records = [self._record(instance, pool) for instance in response["Instances"]]
        logger.info(
            "launched %s for pool %s", ", ".join(r.provider_id for r in records) or "nothing", pool
        )
        return records

    def _describe(self, **kwargs: Any) -> list[InstanceTypeDef]:
        instances: list[InstanceTypeDef] = []
        try:
            for page in self.client.get_paginator("describe_instances").paginate(**kwargs):
                for reservation in page["Reservations"]:
                    instances += reservation.get("Instances", [])
        except (ClientError, BotoCoreError) as error:
            failure = InstancesNotFound if means_gone(error) else ProviderError
            raise failure(f"DescribeInstances failed: {error}") from error
        return instances

    def _record(self, instance: InstanceTypeDef, pool: str | None = None) -> InstanceRecord:
        tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
        launched: datetime | None = instance.get("LaunchTime")
        details = {
            key: str(value)
            for key, value in (
                ("instance_type", instance.get("InstanceType")),
                ("private_ip", instance.get("PrivateIpAddress")),
                ("availability_zone", instance.get("Placement", {}).get("AvailabilityZone")),
            )
            if value
        }
        return InstanceRecord(
            provider=self.name,
            provider_id=instance["InstanceId"],
            pool=tags.get(POOL_TAG, pool or ""),
            cluster=tags.get(CLUSTER_TAG, self.cluster),
            state=_state(instance),
            launched_at=launched.timestamp() if launched else None,
            market="spot" if instance.get("InstanceLifecycle") == "spot" else "on-demand",
            details=details,
        )


def _state(instance: InstanceTypeDef) -> InstanceState:
    return _STATES.get(instance.get("State", {}).get("Name", "terminated"), InstanceState.PENDING)


def _status(instance: InstanceTypeDef) -> InstanceStatus:
    """The state, and for a terminated instance AWS's word on why (its ``StateReason``)."""
    state = _state(instance)
    if state != InstanceState.TERMINATED:
        return InstanceStatus(state)
    return InstanceStatus(state, instance.get("StateReason", {}).get("Message") or None)
