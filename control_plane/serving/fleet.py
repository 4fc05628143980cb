"""Live agents: who is connected, to which pool, and how many of their slots are taken.

An agent's state has one owner, :class:`AgentLink`: the state the agent reports, plus the
reasons the control plane holds it back (a rollout swapping its model, a scale-down drain,
the control plane shutting down). ``state`` and ``free_slots`` are derived from both, so a
``ready`` the agent sends never undoes a hold; only whoever set a hold releases it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from control_plane.serving.held_prefixes import HeldPrefixes
from control_plane.serving.jobs import InferenceJob
from paddler.protocol import AgentState, CpuPath, EngineStats, Message

HoldReason = Literal["rollout", "scale_down", "shutdown"]


@dataclass(frozen=True)
class PoolLoad:
    """A pool's agents and slots right now: every view of a pool counts them this way."""

    agents_connected: int
    agents_ready: int
    slots_total: int  # slots of ready agents: what can take work now
    slots_busy: int  # jobs running on any of its agents
    serves_embeddings: bool  # some connected agent takes embedding jobs


@dataclass(eq=False)
class AgentLink:
    """A connected agent. Messages put in ``outbox`` are written to its websocket in order."""

    agent_id: str
    name: str
    pool: str
    model: str
    slots: int
    remote_address: str | None = None
    instance_id: str | None = None
    embeddings: bool = False  # serves embedding jobs too
    reported_state: AgentState = "loading"  # what the agent said in its last status
    holds: set[HoldReason] = field(default_factory=set)  # why no new work goes to it
    issues: tuple[str, ...] = ()
    engine: EngineStats | None = None  # the agent engine's figures from its last status
    cpu: CpuPath | None = None  # its CPU's features and the buffer types its model got
    download_progress: float | None = None
    applied_version: int = 0  # the pool's desired-state version the agent runs
    sent_version: int = 0  # the newest desired-state version sent to it
    jobs: dict[str, InferenceJob] = field(default_factory=dict)
    connected_at: float = field(default_factory=time.time)
    last_assigned_at: float = field(default_factory=time.monotonic)
    # wall-clock times (time.time) the autoscaler reads: its last job ended (or it connected),
    # its first "ready" status, its first token
    idle_since: float = field(default_factory=time.time)
    ready_at: float | None = None
    first_token_at: float | None = None
    connection_id: int = 0
    prefixes: HeldPrefixes = field(default_factory=HeldPrefixes)  # what its slots' KV holds
    outbox: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)

    @property
    def state(self) -> AgentState:
        """The agent's state as the fleet sees it: a ready agent that is held is draining."""
        if self.holds and self.reported_state == "ready":
            return "draining"
        return self.reported_state

    @property
    def free_slots(self) -> int:
        """Slots that may take a job now: the one place that decides whether it gets work."""
        if self.state != "ready":
            return 0
        return max(0, self.slots - len(self.jobs))

    def hold(self, reason: HoldReason) -> None:
        """Give it no new work (its running jobs go on) until ``release(reason)``."""
        self.holds.add(reason)

    def release(self, reason: HoldReason) -> None:
        self.holds.discard(reason)

    def send(self, message: Message) -> None:
        self.outbox.put_nowait(message)


class Fleet:
    """The registry of connected agents, indexed by id and by pool."""

    def __init__(self) -> None:
        self._agents: dict[str, AgentLink] = {}

    def add(self, link: AgentLink) -> AgentLink | None:
        """Register ``link``; return the link it replaces when the same agent reconnects."""
        previous = self._agents.get(link.agent_id)
        self._agents[link.agent_id] = link
        return previous

    def remove(self, link: AgentLink) -> bool:
        if self._agents.get(link.agent_id) is link:
            del self._agents[link.agent_id]
            return True
        return False

    def get(self, agent_id: str) -> AgentLink | None:
        return self._agents.get(agent_id)

    def hold_all(self, reason: HoldReason) -> None:
        for link in self._agents.values():
            link.hold(reason)

    def load(self, pool: str) -> PoolLoad:
        links = self.in_pool(pool)
        ready = [link for link in links if link.state == "ready"]
        return PoolLoad(
            agents_connected=len(links),
            agents_ready=len(ready),
            slots_total=sum(link.slots for link in ready),
            slots_busy=sum(len(link.jobs) for link in links),
            serves_embeddings=any(link.embeddings for link in links),
        )

    def in_pool(self, pool: str) -> list[AgentLink]:
        return [link for link in self._agents.values() if link.pool == pool]

    def __iter__(self) -> Iterator[AgentLink]:
        return iter(list(self._agents.values()))

    def __len__(self) -> int:
        return len(self._agents)
