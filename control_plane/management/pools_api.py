"""Management JSON API for one pool: create it, read it, set its desired state, delete it."""

from __future__ import annotations

from pydantic import BaseModel, Field
from quart import Blueprint, Response
from quart_schema import validate_request, validate_response

from control_plane.db.store import PoolRecord
from control_plane.management.pool_changes import (
    create_pool,
    delete_pool,
    pool_not_found,
    set_desired_state,
)
from control_plane.serving.desired_state import NewPool, PoolSpec, StoredDesiredState, stored
from control_plane.state import ControlPlane, current_control_plane
from paddler.logs import redact_secrets

pools_api = Blueprint("pools_api", __name__)


class PoolAgent(BaseModel):
    id: str
    name: str
    state: str
    model: str
    applied_version: int = Field(description="desired-state version it runs (0: none)")
    issues: list[str]


class PoolView(BaseModel):
    name: str
    model_source: str
    slots_per_agent: int
    created_at: str
    desired: StoredDesiredState | None = Field(description="None until one is set")
    requests_buffered: int
    agents_applying: list[str] = Field(description="agents applying the desired state now")
    agents: list[PoolAgent]


def pool_view(state: ControlPlane, pool: PoolRecord) -> PoolView:
    desired = stored(pool.settings)
    if desired is not None:
        desired = desired.model_copy(update={"model_source": redact_secrets(desired.model_source)})
    return PoolView(
        name=pool.name,
        model_source=redact_secrets(pool.model_source),
        slots_per_agent=pool.slots_per_agent,
        created_at=pool.created_at.isoformat(),
        desired=desired,
        requests_buffered=state.scheduler.queued(pool.name),
        agents_applying=state.rollout.agents_swapping(pool.name),
        agents=[
            PoolAgent(
                id=link.agent_id,
                name=link.name,
                state=link.state,
                model=link.model,
                applied_version=link.applied_version,
                issues=list(link.issues),
            )
            for link in sorted(state.fleet.in_pool(pool.name), key=lambda link: link.name)
        ],
    )


@pools_api.post("/api/v1/pools")
@validate_request(NewPool)
@validate_response(PoolView, 201)
async def create(data: NewPool) -> tuple[PoolView, int]:
    """Create a pool (its name is the model clients ask for) with its desired state."""
    state = current_control_plane()
    return pool_view(state, await create_pool(state, data)), 201


@pools_api.get("/api/v1/pools/<name>")
@validate_response(PoolView)
async def read(name: str) -> PoolView:
    """A pool, its desired state, and which version each of its agents runs."""
    state = current_control_plane()
    pool = state.pools.get(name)
    if pool is None:
        raise pool_not_found(name)
    return pool_view(state, pool)


@pools_api.put("/api/v1/pools/<name>/desired-state")
@validate_request(PoolSpec)
@validate_response(PoolView)
async def put_desired_state(name: str, data: PoolSpec) -> PoolView:
    """Replace the pool's desired state; its agents apply it one at a time (422 names the field
    when the model source or chat template is unusable)."""
    state = current_control_plane()
    return pool_view(state, await set_desired_state(state, name, data))


@pools_api.delete("/api/v1/pools/<name>")
async def delete(name: str) -> Response:
    """Delete a pool; 409 while it has buffered requests or connected agents."""
    await delete_pool(current_control_plane(), name)
    return Response(status=204)
