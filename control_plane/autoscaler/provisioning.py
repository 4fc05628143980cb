"""Changing what a pool runs through its provider: launch, drain then terminate, terminate.

Each change is kept in the pool's ``LiveInstances`` and recorded as a scaling event. Provider
calls block, so they run in a thread. A drained agent takes no new jobs; its instance is
terminated once the agent has finished its jobs or left, or after ``drain_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from control_plane.autoscaler.decisions import DrainAndTerminate, Launch
from control_plane.autoscaler.live_instances import LiveInstances
from control_plane.db.scaling_store import DRAINING
from control_plane.providers.base import AgentSpec, Provider
from control_plane.serving.fleet import AgentLink, Fleet
from paddler import protocol

logger = logging.getLogger("paddler.autoscaler")


class Provisioner:
    def __init__(
        self,
        pool: str,
        provider: Provider,
        fleet: Fleet,
        instances: LiveInstances,
        *,
        drain_timeout: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pool = pool
        self.provider = provider
        self.fleet = fleet
        self.instances = instances
        self.drain_timeout = drain_timeout
        self.clock = clock
        self._drains: dict[str, asyncio.Task[None]] = {}

    def draining(self, provider_id: str) -> bool:
        """Whether the instance is being drained (its termination is under way)."""
        return provider_id in self._drains

    async def launch(self, spec: AgentSpec, action: Launch) -> None:
        """Launch ``action.count`` instances running ``spec``; raises ``ProviderError`` (having
        recorded nothing) when the provider cannot."""
        called = self.clock()  # the breakdown starts at the launch call, on our clock
        records = await asyncio.to_thread(self.provider.launch, spec, action.count)
        for record in records:
            await self.instances.add(self.provider.name, record.provider_id, called)
        ids = ", ".join(record.provider_id for record in records)
        await self.instances.record_event("launch", f"{action.reason}: {ids}", len(records))

    async def drain(self, action: DrainAndTerminate) -> None:
        link = self.fleet.get(action.agent_id)
        row = self.instances.row_of(link) if link is not None else None
        if link is None or row is None or row.provider_id in self._drains:
            return
        link.send(protocol.Drain())
        link.hold("scale_down")  # no new jobs from now on, before the agent's status says so
        await self.instances.update(row, state=DRAINING)
        await self.instances.record_event("drain", f"{row.provider_id}: {action.reason}")
        task = asyncio.create_task(
            self._terminate_when_drained(link, row.provider_id, action.reason)
        )
        self._drains[row.provider_id] = task

    async def _terminate_when_drained(self, link: AgentLink, provider_id: str, reason: str) -> None:
        deadline = self.clock() + self.drain_timeout
        while self.clock() < deadline:
            if not link.jobs or link not in self.fleet.in_pool(self.pool):
                break
            await asyncio.sleep(0.2)
        try:
            await self.terminate(provider_id, f"scaled down: {reason}", "terminate")
        except Exception:
            logger.exception("pool %s: could not terminate %s", self.pool, provider_id)
        finally:
            self._drains.pop(provider_id, None)

    async def terminate(self, provider_id: str, reason: str, action: str) -> None:
        await asyncio.to_thread(self.provider.terminate, provider_id)
        await self.instances.close(provider_id, reason)
        await self.instances.record_event(action, f"{provider_id}: {reason}", -1)

    async def close(self, *, terminate: bool) -> None:
        """Stop draining; with ``terminate``, stop every instance of the pool too."""
        for task in self._drains.values():
            task.cancel()
        await asyncio.gather(*self._drains.values(), return_exceptions=True)
        if terminate:
            for provider_id in list(self.instances.rows):
                await self.terminate(provider_id, "the control plane stopped", "terminate")
