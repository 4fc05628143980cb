"""The bookkeeping of one pool's live instances, as the autoscaler keeps them between ticks.

For each instance of the pool the provider runs: its ``instances`` row, kept up to date with
what the fleet saw of its agent, and the start of its boot timer; for the pool, the latest cold
starts (seconds from the launch call to the model loaded), which make the expected wait. Row
changes go to the table and to the cold-start phase metrics; scaling events are recorded with
the pool's machine counts.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime

from control_plane.autoscaler.decisions import BootingInstance
from control_plane.autoscaler.metrics import ScalingMetrics
from control_plane.autoscaler.moments import moment
from control_plane.autoscaler.reconcile import Reconciled, reconcile_instances
from control_plane.db.scaling_store import BOOTING, MILESTONES, READY, InstanceRow, ScalingStore
from control_plane.providers.base import Provider
from control_plane.serving.fleet import AgentLink

logger = logging.getLogger("paddler.autoscaler")

OnReady = Callable[[InstanceRow], Awaitable[None]]


class LiveInstances:
    def __init__(
        self,
        pool: str,
        store: ScalingStore,
        metrics: ScalingMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pool = pool
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.rows: dict[str, InstanceRow] = {}  # provider id -> row, for this pool
        self.boot_started: dict[str, float] = {}  # provider id -> start of its boot timer
        self.cold_starts: list[float] = []  # seconds from launch to model loaded, latest last
        # Ready instances found running at start whose agent has not come back yet: they count
        # as booting (their boot timer began at start), so a restart launches nothing twice.
        self.rejoining: set[str] = set()

    # what others ask

    def count(self) -> int:
        return len(self.rows)

    def states(self) -> dict[str, int]:
        """Live instances by state (booting, ready, draining)."""
        counts: dict[str, int] = {}
        for row in self.rows.values():
            counts[row.state] = counts.get(row.state, 0) + 1
        return counts

    def expected_wait(self) -> float | None:
        """Seconds until a cold start under way should be serving, from recent cold starts;
        None when nothing is booting or there is no history to go by."""
        if not self.cold_starts:
            return None
        booting = [self.boot_started[pid] for pid, row in self.rows.items() if row.state == BOOTING]
        if not booting:
            return None
        typical = statistics.median(self.cold_starts[-5:])
        return max(0.0, typical - (self.clock() - min(booting)))

    def row_of(self, link: AgentLink) -> InstanceRow | None:
        """The row of the instance ``link``'s agent runs on; None if no live instance of ours."""
        return self.rows.get(link.instance_id or "")

    def booting(self, serving: set[str | None]) -> tuple[BootingInstance, ...]:
        """Instances still booting whose agent is not ``serving`` already."""
        return tuple(
            BootingInstance(pid, self.boot_started[pid])
            for pid, row in self.rows.items()
            if (row.state == BOOTING or pid in self.rejoining) and pid not in serving
        )

    # keeping rows up to date

    async def reconcile(self, provider: Provider, max_agents: int) -> None:
        """Make the table agree with the provider (``control_plane.autoscaler.reconcile``)."""
        self.cold_starts = list(reversed(await self.store.recent_cold_starts(self.pool)))
        await reconcile_instances(
            self.pool,
            max_agents,
            provider,
            self.store,
            self.clock(),
            Reconciled(self.rows, self.boot_started),
            self.record_event,
        )
        self.rejoining = {pid for pid, row in self.rows.items() if row.state == READY}

    async def add(self, provider: str, provider_id: str, launched: float) -> None:
        """A launched instance; its boot timer starts at ``launched``, the launch call."""
        row = await self.store.add_instance(provider, provider_id, self.pool, moment(launched))
        self.rows[row.provider_id] = row
        self.boot_started[row.provider_id] = launched

    async def sync(self, links: list[AgentLink], on_ready: OnReady) -> None:
        """Copy what the fleet saw of each agent into its row: hello, first ``ready`` status,
        first token; ``on_ready`` hears of each instance whose model just loaded."""
        for link in links:
            row = self.row_of(link)
            if row is None:
                continue
            if link.ready_at is not None:
                self.rejoining.discard(row.provider_id)
            changes: dict[str, object] = {}
            if row.registered_at is None:
                changes["registered_at"] = moment(link.connected_at)
            if link.ready_at is not None and row.model_loaded_at is None:
                changes["model_loaded_at"] = moment(link.ready_at)
                if row.state == BOOTING:
                    changes["state"] = READY
            if link.first_token_at is not None and row.first_token_at is None:
                changes["first_token_at"] = moment(link.first_token_at)
            if changes:
                await self.update(row, **changes)
            if "model_loaded_at" in changes:
                seconds = self.rows[row.provider_id].cold_start()["model_loaded"] or 0.0
                self.cold_starts.append(seconds)
                logger.info(
                    "pool %s: %s ready %.1fs after its launch", self.pool, row.provider_id, seconds
                )
                await on_ready(row)

    async def update(self, row: InstanceRow, **changes: object) -> None:
        await self.store.update_instance(row.provider_id, **changes)
        for name in MILESTONES:
            reached = changes.get(name)
            if isinstance(reached, datetime):
                seconds = (reached - row.launched_at).total_seconds()
                self.metrics.phase_reached(self.pool, name.removesuffix("_at"), seconds)
        if row.provider_id in self.rows:
            self.rows[row.provider_id] = replace(self.rows[row.provider_id], **changes)  # type: ignore[arg-type]

    async def close(self, provider_id: str, reason: str) -> None:
        """The instance has ended: it is live no more, and its row says why."""
        self.rows.pop(provider_id, None)
        self.boot_started.pop(provider_id, None)
        self.rejoining.discard(provider_id)
        await self.store.mark_terminated(provider_id, reason)

    async def record_event(
        self, action: str, reason: str, change: int = 0, *, level: int = logging.INFO
    ) -> None:
        """Record what happened, after the fact: ``change`` machines were added (negative:
        removed), so the pool went from ``len - change`` to ``len`` machines."""
        after = len(self.rows)
        before = after - change
        await self.store.add_event(self.pool, action, before, after, reason)
        self.metrics.scaling_action(self.pool, action)
        logger.log(
            level, "pool %s: %s (%d -> %d agents): %s", self.pool, action, before, after, reason
        )
