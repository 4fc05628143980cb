"""Management API of the autoscaler: instances with their cold-start breakdown, and the
scaling events, newest first."""

from __future__ import annotations

import re
from typing import Any

from quart import Blueprint, request

from control_plane import errors
from control_plane.db.scaling_store import InstanceRow, ScalingEventRow
from control_plane.state import current_control_plane

scaling_api = Blueprint("scaling_api", __name__)

MAX_LIMIT = 1000
LIMIT_PATTERN = re.compile(r"[0-9]{1,4}")


def _limit() -> int:
    raw = request.args.get("limit", "200")
    # str.isdigit() also takes digits int() refuses, such as "²"
    if not LIMIT_PATTERN.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise errors.invalid_request(
            f"limit must be a whole number from 1 to {MAX_LIMIT}, got {raw!r}", param="limit"
        )
    return int(raw)


def _time(row: Any, name: str) -> str | None:
    moment = getattr(row, name)
    return None if moment is None else moment.isoformat()


def _instance_view(row: InstanceRow) -> dict[str, Any]:
    times = (
        "launched_at",
        "running_at",
        "registered_at",
        "model_loaded_at",
        "first_token_at",
        "terminated_at",
    )
    return {
        "provider": row.provider,
        "provider_id": row.provider_id,
        "pool": row.pool,
        "state": row.state,
        **{name: _time(row, name) for name in times},
        "reason": row.reason,
        "cold_start_seconds": row.cold_start(),
    }


def _event_view(event: ScalingEventRow) -> dict[str, Any]:
    return {
        "id": event.id,
        "time": event.time.isoformat(),
        "pool": event.pool,
        "action": event.action,
        "from": event.from_count,
        "to": event.to_count,
        "reason": event.reason,
    }


@scaling_api.get("/api/v1/instances")
async def list_instances() -> dict[str, Any]:
    """``?pool=NAME``, ``?live=1`` (not terminated), ``?limit=N``."""
    autoscaling = current_control_plane().autoscaling
    live = request.args.get("live", "") in ("1", "true", "yes")
    rows = await autoscaling.store.list_instances(
        request.args.get("pool") or None, live_only=live, limit=_limit()
    )
    return {"data": [_instance_view(row) for row in rows], "autoscaler": autoscaling.status()}


@scaling_api.get("/api/v1/scaling-events")
async def list_scaling_events() -> dict[str, Any]:
    """``?pool=NAME``, ``?limit=N``."""
    store = current_control_plane().autoscaling.store
    events = await store.list_events(request.args.get("pool") or None, limit=_limit())
    return {"data": [_event_view(event) for event in events]}
