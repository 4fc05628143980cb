"""The control plane's shared state: settings, store, fleet, scheduler and known pools."""

from __future__ import annotations

import asyncio
import logging

from quart import current_app

from control_plane.autoscaler.service import Autoscaling
from control_plane.db import migrate
from control_plane.db.key_store import KeyStore
from control_plane.db.store import PoolRecord, Store
from control_plane.db.usage_store import UsageStore
from control_plane.serving.desired_state import StoredDesiredState, stored
from control_plane.serving.fleet import AgentLink, Fleet
from control_plane.serving.observer import Observers
from control_plane.serving.rollout import Rollout
from control_plane.serving.scheduler import Scheduler
from control_plane.settings import ControlPlaneSettings
from control_plane.telemetry.activity import RecentActivity
from control_plane.telemetry.metrics import ServingMetrics
from control_plane.telemetry.routing import RoutingTally
from control_plane.tenancy import KeyDirectory, Tenancy, TenancyObserver

logger = logging.getLogger("paddler.control_plane")

CONFIG_KEY = "PADDLER"


def current_control_plane() -> ControlPlane:
    """The control plane serving the current request (both apps share one)."""
    state: ControlPlane = current_app.config[CONFIG_KEY]
    return state


class ControlPlane:
    def __init__(self, settings: ControlPlaneSettings) -> None:
        self.settings = settings
        self.fleet = Fleet()
        self.metrics = ServingMetrics()
        self.activity = RecentActivity()
        self.routing = RoutingTally()
        self._tenancy_observer = TenancyObserver()
        self.autoscaling = Autoscaling(
            settings,
            self.fleet,
            self.metrics.registry,
            state_dir=settings.state_dir,
            management_addr=settings.management_addr,
            agent_token=settings.agent_token,
        )
        self.scheduler = Scheduler(
            self.fleet,
            max_buffered=settings.max_buffered_requests,
            max_attempts=settings.max_dispatch_attempts,
            observer=Observers(
                [
                    self.metrics,
                    self.activity,
                    self.routing,
                    self.autoscaling.observer,
                    self._tenancy_observer,
                ]
            ),
        )
        self.metrics.watch(self)
        self.rollout = Rollout(self.fleet, self.metrics.registry, self.scheduler.pump)
        self.pools: dict[str, PoolRecord] = {}
        self.closing = asyncio.Event()
        self._store: Store | None = None
        self._key_store: KeyStore | None = None
        self._usage_store: UsageStore | None = None
        self._tenancy: Tenancy | None = None
        self._key_sync: asyncio.Task[None] | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the control plane has not been started")
        return self._store

    @property
    def key_store(self) -> KeyStore:
        if self._key_store is None:
            raise RuntimeError("the control plane has not been started")
        return self._key_store

    @property
    def usage_store(self) -> UsageStore:
        if self._usage_store is None:
            raise RuntimeError("the control plane has not been started")
        return self._usage_store

    @property
    def tenancy(self) -> Tenancy:
        """API keys, their limits and usage (see control_plane/tenancy)."""
        if self._tenancy is None:
            raise RuntimeError("the control plane has not been started")
        return self._tenancy

    async def start(self) -> None:
        url = self.settings.resolved_database_url
        await asyncio.to_thread(migrate.upgrade, url)
        self._store = Store.from_url(url)
        self._key_store = KeyStore(self.store.engine)
        self._usage_store = UsageStore(self.store.engine)
        self._tenancy = Tenancy(
            KeyDirectory(self.settings.api_keys, self.key_store),
            self.usage_store,
            self.metrics.registry,
            observer=self._tenancy_observer,
        )
        await self.tenancy.sync()  # the keys are known before the first request
        self._key_sync = asyncio.create_task(self._sync_keys(), name="key-sync")
        await self.store.mark_all_disconnected("control plane restarted")
        self.pools = {pool.name: pool for pool in await self.store.list_pools()}
        logger.info("state database ready; %d pool(s) known", len(self.pools))
        await self.autoscaling.start(self.store, self.scheduler, self.ensure_pool)
        for pool in list(self.pools.values()):
            self.desired_state_changed(pool.name, stored(pool.settings))
        if not self.settings.agent_token:
            logger.warning("no --agent-token set: any agent that can reach this address may join")

    def desired_state_changed(self, name: str, desired: StoredDesiredState | None) -> None:
        """Roll ``name``'s desired state out to its agents; its bounds go to the autoscaler."""
        self.rollout.set(name, desired)
        self.scheduler.router.policies.pop(name, None)
        if desired is not None:
            self.scheduler.router.policies[name] = desired.routing.policy()
            scaling = desired.scaling
            self.autoscaling.apply_desired(
                name, desired.model_source, desired.slots, scaling.min_agents, scaling.max_agents
            )

    async def _sync_keys(self) -> None:
        """Keep keys, usage and rate windows in step with the database (and other replicas)."""
        while True:
            await asyncio.sleep(self.settings.key_sync_interval)
            await self.tenancy.sync()

    async def stop(self) -> None:
        await self.autoscaling.stop()
        if self._key_sync is not None:
            self._key_sync.cancel()
            await asyncio.gather(self._key_sync, return_exceptions=True)
            self._key_sync = None
            await self.tenancy.sync()  # the usage of the last moments is kept
        if self._store is not None:
            await self._store.close()
            self._store = None

    async def ensure_pool(self, name: str, model_source: str, slots_per_agent: int) -> PoolRecord:
        pool = self.pools.get(name)
        if pool is None:
            pool = await self.store.ensure_pool(name, model_source, slots_per_agent)
            self.pools[name] = pool
            logger.info("created pool %s serving %s", name, model_source)
        elif pool.model_source != model_source:
            logger.warning(
                "an agent joined pool %s with model %s; the pool's model is %s",
                name,
                model_source,
                pool.model_source,
            )
        return pool

    async def record_disconnect(self, link: AgentLink, reason: str) -> None:
        """Close the agent's connection record; at shutdown, the next start does it instead."""
        if self._store is not None:
            await self._store.agent_disconnected(link.agent_id, link.connection_id, reason)
