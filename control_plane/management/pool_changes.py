"""Create pools, change their desired state and delete them: the store, the live pools and
the rollout kept in step. Shared by the JSON API and the dashboard's pool form."""

from __future__ import annotations

import logging

from control_plane import errors
from control_plane.db.store import PoolRecord
from control_plane.serving.desired_state import NewPool, PoolSpec, check_spec, stored, with_desired
from control_plane.state import ControlPlane

logger = logging.getLogger("paddler.pools")


def pool_not_found(name: str) -> errors.OpenAIError:
    return errors.OpenAIError(404, f"No pool named {name!r}.", code="pool_not_found")


async def create_pool(state: ControlPlane, new: NewPool) -> PoolRecord:
    if new.name in state.pools:
        raise errors.OpenAIError(
            409, f"A pool named {new.name!r} already exists.", param="name", code="pool_exists"
        )
    await check_spec(new)
    await state.ensure_pool(new.name, new.model_source, new.slots)
    return await set_desired_state(state, new.name, new)


async def set_desired_state(state: ControlPlane, name: str, spec: PoolSpec) -> PoolRecord:
    """Store ``spec`` as the pool's next desired-state version and start rolling it out."""
    pool = state.pools.get(name)
    if pool is None:
        raise pool_not_found(name)
    await check_spec(spec)
    current = stored(pool.settings)
    settings, desired = with_desired(pool.settings, spec, (current.version if current else 0) + 1)
    updated = await state.store.update_pool(name, spec.model_source, spec.slots, settings)
    if updated is None:
        raise pool_not_found(name)
    state.pools[name] = updated
    logger.info(
        "pool %s: desired state v%d: %s, %d slots per agent",
        name,
        desired.version,
        spec.model_source,
        spec.slots,
    )
    state.desired_state_changed(name, desired)
    return updated


async def delete_pool(state: ControlPlane, name: str) -> None:
    """Delete an idle pool: refused (409) while it has buffered requests or agents."""
    if name not in state.pools:
        raise pool_not_found(name)
    buffered = state.scheduler.queued(name)
    if buffered:
        raise errors.OpenAIError(
            409,
            f"Pool {name!r} has {buffered} buffered request(s) waiting for an agent; delete it "
            "once they are served or have timed out.",
            code="pool_has_buffered_requests",
        )
    agents = state.fleet.in_pool(name)
    if agents:
        raise errors.OpenAIError(
            409,
            f"Pool {name!r} has {len(agents)} connected agent(s); stop them first.",
            code="pool_has_agents",
        )
    autoscaled = state.autoscaling.pool
    if autoscaled is not None and autoscaled.pool == name:
        raise errors.OpenAIError(
            409,
            f"Pool {name!r} is the autoscaler's pool (setting agent_pool); it cannot be deleted.",
            code="pool_autoscaled",
        )
    await state.store.delete_pool(name)
    del state.pools[name]
    state.rollout.set(name, None)
    logger.info("deleted pool %s", name)
