"""The internal JSON API: health, agents and pools."""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from control_plane.state import current_control_plane

management_api = Blueprint("management_api", __name__)


@management_api.get("/health")
async def health() -> dict[str, Any]:
    return {"status": "ok", "agents": len(current_control_plane().fleet)}


@management_api.get("/api/v1/agents")
async def list_agents() -> dict[str, Any]:
    state = current_control_plane()
    live = {link.agent_id: link for link in state.fleet}
    agents = []
    for record in await state.store.list_agents():
        link = live.pop(record.id, None)
        agents.append(
            {
                "id": record.id,
                "name": record.name,
                "pool": record.pool_name,
                "connected": link is not None,
                "state": link.state if link else record.last_state,
                "issues": list(link.issues) if link else [],
                "slots_total": link.slots if link else 0,
                "slots_busy": len(link.jobs) if link else 0,
                "remote_address": link.remote_address if link else None,
                "first_seen": record.first_seen.isoformat(),
                "last_seen": record.last_seen.isoformat(),
            }
        )
    return {"data": agents}


@management_api.get("/api/v1/pools")
async def list_pools() -> dict[str, Any]:
    state = current_control_plane()
    pools = []
    for pool in sorted(state.pools.values(), key=lambda pool: pool.name):
        links = state.fleet.in_pool(pool.name)
        pools.append(
            {
                "name": pool.name,
                "model_source": pool.model_source,
                "slots_per_agent": pool.slots_per_agent,
                "settings": pool.settings,
                "created_at": pool.created_at.isoformat(),
                "agents_connected": len(links),
                "agents_ready": sum(1 for link in links if link.state == "ready"),
                "slots_total": sum(link.slots for link in links if link.state == "ready"),
                "slots_busy": sum(len(link.jobs) for link in links),
                "requests_buffered": state.scheduler.queued(pool.name),
            }
        )
    return {"data": pools, "counters": dict(state.scheduler.counters)}
