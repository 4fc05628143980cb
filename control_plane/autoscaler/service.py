"""The autoscaler as a part of the control plane: built from its settings, started and stopped
with it, and asked by the inference API how long a cold start should still take."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from control_plane.autoscaler.loop import PoolAutoscaler
from control_plane.autoscaler.metrics import ScalingMetrics
from control_plane.autoscaler.observer import AutoscalerObserver
from control_plane.autoscaler.settings import AutoscalerSettings
from control_plane.autoscaler.setup import build_policy, build_provider, build_spec
from control_plane.db.scaling_store import ScalingStore
from control_plane.db.store import PoolRecord, Store
from control_plane.serving.fleet import Fleet
from control_plane.serving.scheduler import Scheduler

logger = logging.getLogger("paddler.autoscaler")

STOP_TIMEOUT_SECONDS = 60.0

EnsurePool = Callable[[str, str, int], Awaitable[PoolRecord]]


class Autoscaling:
    """At most one autoscaled pool per control plane (``--provider`` and ``--agent-*``)."""

    def __init__(
        self,
        settings: AutoscalerSettings,
        fleet: Fleet,
        registry: CollectorRegistry | None = None,
        *,
        state_dir: Path,
        management_addr: str,
        agent_token: str,
    ) -> None:
        """``management_addr`` and ``agent_token`` are what launched agents dial and show;
        ``state_dir`` keeps the local provider's records."""
        self.settings = settings
        self.management_addr = management_addr
        self.agent_token = agent_token
        self.fleet = fleet
        self.metrics = ScalingMetrics(registry)  # in the control plane's /metrics
        self.metrics.watch(self.instance_counts)
        self.observer = AutoscalerObserver(self.wake)  # the scheduler's hooks feed it
        self.provider = build_provider(settings, state_dir)
        self.terminate_on_exit = False  # `paddler up` stops its local agents when it stops
        self.pool: PoolAutoscaler | None = None
        self._store: ScalingStore | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def store(self) -> ScalingStore:
        if self._store is None:
            raise RuntimeError("autoscaling has not been started")
        return self._store

    async def start(self, store: Store, scheduler: Scheduler, ensure_pool: EnsurePool) -> None:
        self._store = ScalingStore(store.engine)
        if self.provider is None:
            return
        spec = build_spec(self.settings, self.management_addr, self.agent_token)
        await ensure_pool(spec.pool, spec.model, spec.slots)
        self.pool = PoolAutoscaler(
            spec.pool,
            build_policy(self.settings),
            self.provider,
            spec,
            self.store,
            self.fleet,
            scheduler,
            self.observer,
            drain_timeout=self.settings.drain_timeout,
            metrics=self.metrics,
        )
        self._task = asyncio.create_task(self.pool.run(self._stop), name="autoscaler")
        logger.info(
            "autoscaling pool %s with the %s provider (%d to %d agents)",
            spec.pool,
            self.provider.name,
            self.settings.min_agents,
            self.settings.max_agents,
        )

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None and self.pool is not None:
            self.pool.wake()  # the loop ends after the tick under way: no launch is cut short
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_TIMEOUT_SECONDS)
            except TimeoutError:
                logger.warning("the autoscaler did not stop within %.0fs", STOP_TIMEOUT_SECONDS)
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.pool is not None:
            await self.pool.close(terminate=self.terminate_on_exit)

    def apply_desired(
        self, pool: str, model: str, slots: int, min_agents: int | None, max_agents: int | None
    ) -> None:
        """A pool's desired state: what new agents run, and agent bounds (None: the settings')."""
        if self.pool is None or self.pool.pool != pool:
            return
        self.pool.spec = dataclasses.replace(self.pool.spec, model=model, slots=slots)
        low = self.settings.min_agents if min_agents is None else min_agents
        high = max(self.settings.max_agents, low) if max_agents is None else max_agents
        self.pool.policy = dataclasses.replace(
            build_policy(self.settings), slots_per_agent=slots, min_agents=low, max_agents=high
        )
        logger.info("autoscaling pool %s: %d to %d agents of %d slots", pool, low, high, slots)
        self.pool.wake()

    def wake(self, pool: str) -> None:
        if self.pool is not None and self.pool.pool == pool:
            self.pool.wake()

    def instance_counts(self) -> dict[str, dict[str, int]]:
        """Live instances of the autoscaled pool by state, for ``paddler_instances``."""
        if self.pool is None:
            return {}
        return {self.pool.pool: self.pool.instance_states()}

    def expected_wait(self, pool: str) -> float | None:
        if self.pool is None or self.pool.pool != pool:
            return None
        return self.pool.expected_wait()

    def failing_reason(self, pool: str) -> str | None:
        """Why ``pool`` cannot get capacity now (its boots keep failing); None if it can."""
        if self.pool is None or self.pool.pool != pool:
            return None
        return self.pool.failing_reason()

    def status(self) -> dict[str, Any]:
        pool = self.pool
        return {
            "provider": self.settings.provider,
            "cluster": self.settings.cluster,
            "pool": pool.pool if pool else None,
            "min_agents": pool.policy.min_agents if pool else self.settings.min_agents,
            "max_agents": pool.policy.max_agents if pool else self.settings.max_agents,
            "machines": pool.machines() if pool else 0,
            "failing": pool.failing if pool else False,
            "failed_boots": pool.failed_boots if pool else 0,
            "crashes": pool.crashes.count if pool and pool.crashes else 0,
            "restart_backoff": pool.backoff_reason() if pool else None,
            "provider_error": pool.provider_error() if pool else None,
        }
