"""Which agent served each client session last, per pool: soft session pinning's memory.

A client that names its conversation (``user`` or ``X-Session-Id``) is sent back to the agent
that served it last, whose slots likely still keep its KV. Clients may name as many sessions
as they like, so the memory is bounded: per pool, at most ``capacity`` sessions, the least
recently served forgotten first, and none older than ``ttl`` seconds (by then the agent has
most likely reused the slot). A pool whose sessions all expired is dropped, and a map that
shrank to a quarter of its peak is copied, so the memory of a burst is given back (a dict
never shrinks by itself).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["SessionMemory"]

DEFAULT_CAPACITY = 10_000  # sessions remembered per pool
DEFAULT_TTL = 1800.0  # seconds a session is remembered after its last job
_COMPACT_FROM = 1024  # a map smaller than this is never worth copying


class _PoolSessions:
    def __init__(self) -> None:
        self.agents: OrderedDict[Hashable, tuple[str, float]] = OrderedDict()  # oldest first
        self.peak = 0

    def expire(self, oldest_kept: float) -> None:
        while self.agents:
            session, (_, served_at) = next(iter(self.agents.items()))
            if served_at >= oldest_kept:
                break
            del self.agents[session]
        if self.peak >= _COMPACT_FROM and len(self.agents) * 4 < self.peak:
            self.agents = OrderedDict(self.agents)
            self.peak = len(self.agents)


class SessionMemory:
    """Per pool, session -> the agent (its id) that served it last."""

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        ttl: float = DEFAULT_TTL,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._clock = clock
        self._pools: dict[str, _PoolSessions] = {}

    def agent_of(self, pool: str, session: Hashable) -> str | None:
        """The agent that served ``session`` last, unless forgotten."""
        self._expire()
        sessions = self._pools.get(pool)
        found = None if sessions is None else sessions.agents.get(session)
        return None if found is None else found[0]

    def served(self, pool: str, session: Hashable, agent_id: str) -> None:
        """``agent_id`` takes ``session``'s latest job."""
        self._expire()
        sessions = self._pools.setdefault(pool, _PoolSessions())
        sessions.agents[session] = (agent_id, self._clock())
        sessions.agents.move_to_end(session)
        while len(sessions.agents) > self.capacity:
            sessions.agents.popitem(last=False)
        sessions.peak = max(sessions.peak, len(sessions.agents))

    def __len__(self) -> int:
        """Sessions remembered, across pools (expired ones may count until next looked at)."""
        return sum(len(sessions.agents) for sessions in self._pools.values())

    def _expire(self) -> None:
        """Forget the sessions served longer than ``ttl`` ago, in every pool (a pool nobody asks
        about any more gives its memory back too), and the pools left with none."""
        oldest_kept = self._clock() - self.ttl
        for pool, sessions in list(self._pools.items()):
            sessions.expire(oldest_kept)
            if not sessions.agents:
                del self._pools[pool]
