"""The one small interface every provider implements.

A provider starts *instances* (a VM, a local process) that each run one ``paddler agent``,
stops them, and lists the ones it started for a cluster so that the autoscaler can reconcile
them with its database after a restart. Calls are synchronous and may block on the network
(boto3) or on a grace period, so the control plane calls them through ``asyncio.to_thread``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable


class ProviderError(Exception):
    """The provider could not do what was asked (refused, misconfigured, unreachable)."""


class InstanceState(StrEnum):
    PENDING = "pending"  # asked for, not running yet
    RUNNING = "running"  # the machine or process runs (its agent may still be loading)
    STOPPED = "stopped"  # stopping or stopped: not serving, but not gone
    TERMINATED = "terminated"  # shutting down or gone for good


@dataclass(frozen=True)
class InstanceStatus:
    """What ``describe`` says of one instance."""

    state: InstanceState
    # Why a TERMINATED instance ended, when the provider knows: "agent exited: SIGSEGV".
    exit_reason: str | None = None


@dataclass(frozen=True)
class AgentSpec:
    """What the started agent should run and where it should report."""

    pool: str
    control_plane_url: str
    agent_token: str
    model: str = ""  # a model source (path, URL, s3://); empty: the agent's default
    slots: int = 4

    def __post_init__(self) -> None:
        if not self.pool:
            raise ValueError("an agent spec needs a pool")
        if self.slots <= 0:
            raise ValueError(f"slots must be greater than 0, got {self.slots}")
        for name in ("pool", "control_plane_url", "agent_token", "model"):
            if "\n" in getattr(self, name) or "\r" in getattr(self, name):
                raise ValueError(f"{name} cannot contain a line break")


@dataclass(frozen=True)
class InstanceRecord:
    """One instance as the provider sees it."""

    provider: str  # "local", "ec2"
    provider_id: str  # the provider's own id: "i-0abc…", "local-3f2a…"
    pool: str
    cluster: str
    state: InstanceState
    launched_at: float | None = None  # seconds since the epoch, when the provider knows it
    market: str = "on-demand"  # "spot" or "on-demand" (local instances: "local")
    details: dict[str, str] = field(default_factory=dict)  # provider specifics (pid, log, AZ…)


@runtime_checkable
class Provider(Protocol):
    """Start, stop and list agent instances of one cluster."""

    name: str
    cluster: str

    def launch(self, spec: AgentSpec, count: int = 1) -> list[InstanceRecord]:
        """Start ``count`` instances running an agent for ``spec.pool``; all or none."""
        ...

    def terminate(self, provider_id: str) -> None:
        """Stop the instance for good. Terminating one that is already gone is not an error."""
        ...

    def list_instances(self, pool: str | None = None) -> list[InstanceRecord]:
        """Instances of this cluster (all pools, or one) that are not terminated."""
        ...

    def describe(self, provider_ids: Sequence[str]) -> dict[str, InstanceStatus]:
        """The status of each instance; ids the provider does not know are TERMINATED.
        Raises ``ProviderError`` when it cannot tell (the states are then unknown)."""
        ...
