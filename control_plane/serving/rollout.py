"""Roll each pool's desired state across its agents, one agent at a time.

An agent behind the pool's version is sent ``protocol.DesiredState`` and counts as draining
from that moment (the scheduler gives it no jobs) until it reports the version applied and
``ready``; only then does the next agent get it. Agents that serve nothing (loading, in
error) go first; agents the autoscaler is draining are skipped (they are about to go).

An agent that fails to apply a version, or has not applied it within
:data:`SWAP_DEADLINE_SECONDS`, is recorded failed for that version and released (it serves
what it still runs, if it can), and the rollout of that version stops while that agent is
connected: the pool's other agents keep serving what they run. A new desired state restarts
the rollout, on every agent behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter

from control_plane.serving.desired_state import StoredDesiredState
from control_plane.serving.fleet import AgentLink, Fleet

logger = logging.getLogger("paddler.rollout")

SWAP_OUTCOMES = ("succeeded", "failed", "timed_out")
SWAP_DEADLINE_SECONDS = 600.0  # time an agent has to apply a desired state (download + load)


@dataclass
class _Swap:
    link: AgentLink  # the connection it was sent on
    version: int
    started_at: float
    working: bool = False  # the agent has reported draining or loading for it
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class Rollout:
    def __init__(
        self,
        fleet: Fleet,
        registry: CollectorRegistry,
        wake: Callable[[str], None],
        *,
        swap_deadline: float = SWAP_DEADLINE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``wake(pool)`` is called when an agent of ``pool`` may take work again."""
        self.fleet = fleet
        self._wake = wake
        self._swap_deadline = swap_deadline
        self._clock = clock
        self.desired: dict[str, StoredDesiredState] = {}
        self._swaps: dict[str, _Swap] = {}  # by agent id: the agent applying a version now
        self._failed: dict[str, int] = {}  # by agent id: the version it could not apply
        self.swaps = Counter(
            "paddler_model_swaps",
            "Desired-state versions agents applied (succeeded) or could not apply (failed)",
            ["pool", "outcome"],
            registry=registry,
        )

    def set(self, pool: str, desired: StoredDesiredState | None) -> None:
        """``pool``'s desired state changed (None: it has none, or the pool is gone)."""
        if desired is None:
            self.desired.pop(pool, None)
            return
        self.desired[pool] = desired
        self.advance(pool)

    def agents_swapping(self, pool: str) -> list[str]:
        return [link.name for link in self.fleet.in_pool(pool) if link.agent_id in self._swaps]

    def agent_joined(self, link: AgentLink) -> None:
        self.advance(link.pool)

    def agent_left(self, link: AgentLink) -> None:
        if self.fleet.get(link.agent_id) is None:
            self._failed.pop(link.agent_id, None)  # gone, not reconnected: its failure goes
        swap = self._swaps.get(link.agent_id)
        if swap is not None and swap.link is link:  # not a newer connection's swap
            del self._swaps[link.agent_id]
            if swap.timer is not None:
                swap.timer.cancel()
            logger.warning(
                "agent %s left pool %s while applying its desired state", link.name, link.pool
            )
        self.advance(link.pool)

    def agent_reported(self, link: AgentLink) -> None:
        """``link`` sent a status: see whether its swap ended, and start the next one."""
        swap = self._swaps.get(link.agent_id)
        if swap is None or swap.link is not link:
            return
        reported = link.reported_state  # its own word: link.state is draining while held
        if reported in ("draining", "loading"):
            swap.working = True
        elif reported == "ready" and link.applied_version >= swap.version:
            self._finish(link, swap, "succeeded")
            logger.info(
                "agent %s of pool %s applied desired state v%d in %.1fs: serving %s",
                link.name,
                link.pool,
                swap.version,
                self._clock() - swap.started_at,
                link.model,
            )
            self.advance(link.pool)
        elif reported == "error" and swap.working:
            self._fail(link, swap, "failed", "; ".join(link.issues) or "no reason given")

    def expire_overdue(self) -> None:
        """Fail every swap that has run past the deadline (also run by a timer per swap)."""
        now = self._clock()
        for swap in list(self._swaps.values()):
            current = self._swaps.get(swap.link.agent_id) is swap
            if current and now - swap.started_at >= self._swap_deadline:
                self._fail(
                    swap.link,
                    swap,
                    "timed_out",
                    f"not applied within {self._swap_deadline:g}s "
                    f"(state {swap.link.reported_state})",
                )

    def _fail(self, link: AgentLink, swap: _Swap, outcome: str, reason: str) -> None:
        self._failed[link.agent_id] = swap.version
        self._finish(link, swap, outcome)
        logger.error(
            "agent %s of pool %s could not apply desired state v%d (%s); it is released and "
            "the rollout of v%d stops until a new desired state is set",
            link.name,
            link.pool,
            swap.version,
            reason,
            swap.version,
        )
        self.advance(link.pool)  # a newer version set meanwhile goes out now

    def _finish(self, link: AgentLink, swap: _Swap, outcome: str) -> None:
        del self._swaps[link.agent_id]
        if swap.timer is not None:
            swap.timer.cancel()
        link.release("rollout")
        self.swaps.labels(link.pool, outcome).inc()
        self._wake(link.pool)

    def advance(self, pool: str) -> None:
        """Send the desired state to the next agent behind it, if none is applying it now."""
        desired = self.desired.get(pool)
        links = self.fleet.in_pool(pool)
        if desired is None or any(link.agent_id in self._swaps for link in links):
            return
        version = desired.version
        failed = [link.name for link in links if self._failed.get(link.agent_id) == version]
        if failed:
            logger.debug("pool %s: v%d halted: failed on %s", pool, version, ", ".join(failed))
            return
        behind = [
            link
            for link in links
            if link.sent_version < version
            and link.applied_version != version
            and "scale_down" not in link.holds  # the autoscaler is draining it away
        ]
        if not behind:
            return
        link = min(behind, key=lambda link: (link.state == "ready", link.name))
        link.sent_version = version
        link.hold("rollout")  # no new jobs until it reports this version applied
        swap = self._swaps[link.agent_id] = _Swap(link, version, self._clock())
        swap.timer = self._start_timer()
        logger.info(
            "pool %s: agent %s applies desired state v%d (%s); %d agent(s) behind",
            pool,
            link.name,
            version,
            desired.model_source,
            len(behind),
        )
        link.send(desired.to_agents())

    def _start_timer(self) -> asyncio.TimerHandle | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not serving (a script or a test): expire_overdue is called
            return None
        return loop.call_later(self._swap_deadline, self.expire_overdue)
