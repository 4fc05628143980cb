"""Roll each pool's desired state across its agents, one agent at a time.

An agent behind the pool's version is sent ``protocol.DesiredState`` and counts as draining
from that moment (the scheduler gives it no jobs) until it reports the version applied and
``ready``; only then does the next agent get it. Agents that serve nothing (loading, in
error) go first. An agent that fails to apply a version stops the rollout of that version:
the pool's other agents keep serving what they run until the operator sets a new one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from control_plane.serving.desired_state import StoredDesiredState
from control_plane.serving.fleet import AgentLink, Fleet

logger = logging.getLogger("paddler.rollout")

SWAP_OUTCOMES = ("succeeded", "failed")


@dataclass
class _Swap:
    version: int
    started_at: float
    working: bool = False  # the agent has reported draining or loading for it


class Rollout:
    def __init__(
        self, fleet: Fleet, registry: CollectorRegistry, wake: Callable[[str], None]
    ) -> None:
        """``wake(pool)`` is called when an agent of ``pool`` may take work again."""
        self.fleet = fleet
        self._wake = wake
        self.desired: dict[str, StoredDesiredState] = {}
        self._swaps: dict[str, _Swap] = {}  # by agent id: the agent applying a version now
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
        if self._swaps.pop(link.agent_id, None) is not None:
            logger.warning(
                "agent %s left pool %s while applying its desired state", link.name, link.pool
            )
        self.advance(link.pool)

    def agent_reported(self, link: AgentLink) -> None:
        """``link`` sent a status: see whether its swap ended, and start the next one."""
        swap = self._swaps.get(link.agent_id)
        if swap is None:
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
                time.monotonic() - swap.started_at,
                link.model,
            )
            self.advance(link.pool)
        elif reported == "error" and swap.working:
            self._finish(link, swap, "failed")
            logger.error(
                "agent %s of pool %s could not apply desired state v%d (%s); the rollout stops "
                "until a new desired state is set",
                link.name,
                link.pool,
                swap.version,
                "; ".join(link.issues) or "no reason given",
            )

    def _finish(self, link: AgentLink, swap: _Swap, outcome: str) -> None:
        del self._swaps[link.agent_id]
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
        if any(link.sent_version == version and link.state == "error" for link in links):
            return  # halted: an agent failed this version
        behind = [link for link in links if link.sent_version < version]
        behind = [link for link in behind if link.applied_version != version]
        if not behind:
            return
        link = min(behind, key=lambda link: (link.state == "ready", link.name))
        link.sent_version = version
        link.hold("rollout")  # no new jobs until it reports this version applied
        self._swaps[link.agent_id] = _Swap(version, time.monotonic())
        logger.info(
            "pool %s: agent %s applies desired state v%d (%s); %d agent(s) behind",
            pool,
            link.name,
            version,
            desired.model_source,
            len(behind),
        )
        link.send(desired.to_agents())
