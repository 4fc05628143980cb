"""A point-in-time picture of the fleet: pools and connected agents, as plain data.

Metrics, the dashboard and its live event stream all read the fleet through here, so they
agree on what "slots total" or "buffered" mean.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from control_plane.db.store import PoolRecord
from control_plane.serving.fleet import AgentLink, Fleet
from control_plane.serving.rollout import Rollout
from control_plane.serving.scheduler import Scheduler
from paddler.logs import redact_secrets
from paddler.protocol import CpuPath, EngineStats


class ServingState(Protocol):
    """What a snapshot reads: the control plane's serving parts (``ControlPlane`` has them)."""

    @property
    def fleet(self) -> Fleet: ...

    @property
    def scheduler(self) -> Scheduler: ...

    @property
    def rollout(self) -> Rollout: ...

    @property
    def pools(self) -> Mapping[str, PoolRecord]: ...


def cpu_json(cpu: CpuPath | None) -> dict[str, Any] | None:
    """An agent's CPU path as the JSON API and the dashboard show it, with its summary."""
    return {**cpu.model_dump(), "summary": cpu.summary} if cpu else None


@dataclass(frozen=True)
class AgentSnapshot:
    id: str
    name: str
    pool: str
    model: str
    state: str
    slots_busy: int
    slots_total: int
    issues: tuple[str, ...]
    embeddings: bool
    download_progress: float | None
    instance_id: str | None
    remote_address: str | None
    connected_seconds: float
    engine: EngineStats | None
    cpu: CpuPath | None
    applied_version: int  # the pool's desired-state version it runs

    @classmethod
    def of(cls, link: AgentLink) -> AgentSnapshot:
        return cls(
            id=link.agent_id,
            name=link.name,
            pool=link.pool,
            model=link.model,
            state=link.state,
            slots_busy=len(link.jobs),
            slots_total=link.slots,
            issues=link.issues,
            embeddings=link.embeddings,
            download_progress=link.download_progress,
            instance_id=link.instance_id,
            remote_address=link.remote_address,
            connected_seconds=max(0.0, time.time() - link.connected_at),
            engine=link.engine,
            cpu=link.cpu,
            applied_version=link.applied_version,
        )

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["issues"] = list(self.issues)
        data["engine"] = self.engine.model_dump() if self.engine else None
        data["cpu"] = cpu_json(self.cpu)
        return data


@dataclass(frozen=True)
class PoolSnapshot:
    name: str
    model_source: str
    agents_connected: int
    agents_ready: int
    slots_busy: int
    slots_total: int  # slots of ready agents: what can take work now
    requests_buffered: int
    tokens_per_second: float  # generated, all agents of the pool together
    desired_version: int  # of its desired state (0: none set); agents report applied_version

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def agent_snapshots(state: ServingState) -> list[AgentSnapshot]:
    """Connected agents, by pool then name."""
    return sorted(
        (AgentSnapshot.of(link) for link in state.fleet),
        key=lambda agent: (agent.pool, agent.name),
    )


def pool_snapshot(state: ServingState, name: str) -> PoolSnapshot:
    links = state.fleet.in_pool(name)
    load = state.fleet.load(name)
    pool = state.pools.get(name)
    desired = state.rollout.desired.get(name)
    return PoolSnapshot(
        name=name,
        model_source=redact_secrets(pool.model_source) if pool else "",
        agents_connected=load.agents_connected,
        agents_ready=load.agents_ready,
        slots_busy=load.slots_busy,
        slots_total=load.slots_total,
        requests_buffered=state.scheduler.queued(name),
        tokens_per_second=sum(link.engine.tokens_per_second for link in links if link.engine),
        desired_version=desired.version if desired else 0,
    )


def pool_snapshots(state: ServingState) -> list[PoolSnapshot]:
    """Every known pool, by name."""
    return [pool_snapshot(state, name) for name in sorted(state.pools)]
