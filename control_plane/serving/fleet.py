"""Live agents: who is connected, to which pool, and how many of their slots are taken."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from control_plane.serving.jobs import InferenceJob
from paddler.protocol import AgentState, CpuPath, EngineStats, Message


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
    state: AgentState = "loading"
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
    outbox: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)

    @property
    def free_slots(self) -> int:
        if self.state != "ready":
            return 0
        return max(0, self.slots - len(self.jobs))

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

    def in_pool(self, pool: str) -> list[AgentLink]:
        return [link for link in self._agents.values() if link.pool == pool]

    def __iter__(self) -> Iterator[AgentLink]:
        return iter(list(self._agents.values()))

    def __len__(self) -> int:
        return len(self._agents)
