"""Management JSON API additions: a pool's buffered requests."""

from __future__ import annotations

import time

from pydantic import BaseModel, Field
from quart import Blueprint
from quart_schema import validate_querystring, validate_response

from control_plane import errors
from control_plane.state import current_control_plane
from control_plane.tenancy import PRIORITIES

PRIORITY_NAMES = {number: name for name, number in PRIORITIES.items()}

fleet_api = Blueprint("fleet_api", __name__)


class BufferQuery(BaseModel):
    limit: int = Field(100, ge=1, le=10_000, description="most requests to list, next first")


class BufferedRequest(BaseModel):
    id: str
    kind: str = Field(description="chat, completion or embedding")
    position: int = Field(description="1 is the next to be dispatched")
    age_seconds: float = Field(description="seconds since the request was admitted")
    attempts: int = Field(description="agents it was already sent to (requeued when lost)")
    key: str = Field(description="the API key's name ('': a bootstrap key or the open API)")
    priority: str = Field(description="the key's priority class: high, normal or low")


class PoolBuffer(BaseModel):
    pool: str
    size: int = Field(description="all requests waiting, also those beyond the limit")
    data: list[BufferedRequest]


@fleet_api.get("/api/v1/pools/<pool>/buffer")
@validate_querystring(BufferQuery)
@validate_response(PoolBuffer)
async def pool_buffer(pool: str, query_args: BufferQuery) -> PoolBuffer:
    """Requests of ``pool`` waiting for a free slot, in the order they will be served."""
    state = current_control_plane()
    if pool not in state.pools:
        raise errors.OpenAIError(404, f"No pool named {pool!r}.", code="pool_not_found")
    waiting = state.scheduler.buffered(pool)
    now = time.monotonic()
    return PoolBuffer(
        pool=pool,
        size=len(waiting),
        data=[
            BufferedRequest(
                id=job.id,
                kind=job.request.kind,
                position=position,
                age_seconds=round(now - job.admitted_at, 3),
                attempts=job.attempts,
                key=job.sender.key,
                priority=PRIORITY_NAMES.get(job.sender.priority, str(job.sender.priority)),
            )
            for position, job in enumerate(waiting[: query_args.limit], start=1)
        ],
    )
