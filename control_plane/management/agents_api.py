"""The internal JSON API: health, agents (with connection history) and pools."""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from control_plane import errors
from control_plane.db.store import AgentRecord
from control_plane.serving.fleet import AgentLink
from control_plane.state import current_control_plane
from control_plane.telemetry.snapshot import cpu_json
from paddler.logs import redact_secrets, redact_secrets_in

management_api = Blueprint("management_api", __name__)


@management_api.get("/health")
async def health() -> dict[str, Any]:
    return {"status": "ok", "agents": len(current_control_plane().fleet)}


def _agent_view(record: AgentRecord, link: AgentLink | None) -> dict[str, Any]:
    """An agent as stored, with its live connection's details when it is connected."""
    return {
        "id": record.id,
        "name": record.name,
        "pool": record.pool_name,
        "connected": link is not None,
        "state": link.state if link else record.last_state,
        "issues": list(link.issues) if link else [],
        "slots_total": link.slots if link else 0,
        "slots_busy": len(link.jobs) if link else 0,
        "embeddings": link.embeddings if link else False,
        "engine": link.engine.model_dump() if link and link.engine else None,
        "cpu": cpu_json(link.cpu) if link else None,
        "download_progress": link.download_progress if link else None,
        "model": link.model if link else None,
        "applied_version": link.applied_version if link else None,
        "remote_address": link.remote_address if link else None,
        "instance_id": link.instance_id if link else None,
        "first_seen": record.first_seen.isoformat(),
        "last_seen": record.last_seen.isoformat(),
    }


@management_api.get("/api/v1/agents")
async def list_agents() -> dict[str, Any]:
    records = await current_control_plane().store.list_agents()
    return {
        "data": [
            _agent_view(record, current_control_plane().fleet.get(record.id)) for record in records
        ]
    }


@management_api.get("/api/v1/agents/<agent_id>")
async def get_agent(agent_id: str) -> dict[str, Any]:
    store = current_control_plane().store
    record = await store.get_agent(agent_id)
    if record is None:
        raise errors.OpenAIError(404, f"No agent with id {agent_id!r}.", code="agent_not_found")
    connections = await store.list_connections(agent_id)
    return {
        **_agent_view(record, current_control_plane().fleet.get(agent_id)),
        "connections": [
            {
                "connected_at": connection.connected_at.isoformat(),
                "disconnected_at": (
                    connection.disconnected_at.isoformat() if connection.disconnected_at else None
                ),
                "remote_address": connection.remote_address,
                "disconnect_reason": connection.disconnect_reason,
            }
            for connection in connections
        ],
    }


@management_api.get("/api/v1/pools")
async def list_pools() -> dict[str, Any]:
    state = current_control_plane()
    pools = []
    for pool in sorted(state.pools.values(), key=lambda pool: pool.name):
        load = state.fleet.load(pool.name)
        pools.append(
            {
                "name": pool.name,
                "model_source": redact_secrets(pool.model_source),
                "slots_per_agent": pool.slots_per_agent,
                "settings": redact_secrets_in(pool.settings),
                "created_at": pool.created_at.isoformat(),
                "agents_connected": load.agents_connected,
                "agents_ready": load.agents_ready,
                "slots_total": load.slots_total,
                "slots_busy": load.slots_busy,
                "requests_buffered": state.scheduler.queued(pool.name),
            }
        )
    return {"data": pools, "counters": dict(state.scheduler.counters)}
