"""Reconciling on start: make the ``instances`` table agree with what the provider runs.

A control plane that restarts finds its instances again by their cluster tag, so nothing is
orphaned and nothing is launched twice (design §8):

- a row whose instance the provider still runs is live again; its boot timer starts anew;
- a row whose instance is gone is closed (``gone``);
- an instance the provider runs that no row knows is adopted, up to ``max_agents``; beyond
  that it is terminated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from control_plane.autoscaler.moments import moment
from control_plane.db.scaling_store import InstanceRow, ScalingStore
from control_plane.providers.base import Provider

logger = logging.getLogger("paddler.autoscaler")

# Records a scaling event: action, reason, machines added (negative: removed).
RecordEvent = Callable[[str, str, int], Awaitable[None]]


@dataclass
class Reconciled:
    """What the loop keeps after reconciling: the live rows and when their boot timers began."""

    live: dict[str, InstanceRow]  # provider id -> row, for this pool
    boot_started: dict[str, float]  # provider id -> start of its boot timer


async def reconcile_instances(
    pool: str,
    max_agents: int,
    provider: Provider,
    store: ScalingStore,
    now: float,
    reconciled: Reconciled,
    record_event: RecordEvent,
) -> None:
    """Fill ``reconciled`` from the provider and the table; events go to ``record_event``
    as they happen (their machine counts read ``reconciled.live``)."""
    live, boot_started = reconciled.live, reconciled.boot_started
    found = await asyncio.to_thread(provider.list_instances, pool)
    rows = [
        row
        for row in await store.list_instances(pool, live_only=True)
        if row.provider == provider.name
    ]
    alive = {instance.provider_id for instance in found}
    for row in rows:
        if row.provider_id in alive:
            live[row.provider_id] = row
            boot_started[row.provider_id] = max(row.launched_at.timestamp(), now)
        else:
            await store.mark_terminated(row.provider_id, "gone while the control plane was down")
            await record_event("gone", f"{row.provider_id} is gone", 0)
    for instance in found:
        if instance.provider_id in live:
            continue
        if len(live) >= max_agents:
            await asyncio.to_thread(provider.terminate, instance.provider_id)
            await record_event(
                "terminate", f"{instance.provider_id}: unknown instance beyond max_agents", 0
            )
            continue
        row = await store.add_instance(
            provider.name,
            instance.provider_id,
            pool,
            moment(instance.launched_at or now),
            reason="adopted: found by its tags, unknown to the database",
        )
        live[row.provider_id] = row
        boot_started[row.provider_id] = now
        await record_event("adopt", f"{instance.provider_id} found by its tags; adopted", 1)
    logger.info("pool %s: %d instance(s) after reconciling with %s", pool, len(live), provider.name)
