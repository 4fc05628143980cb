"""What the dashboard shows of the autoscaler: its live instances with the cold-start phases
each has reached so far, and the latest scaling events (``templates/scaling_live.html``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from control_plane.state import ControlPlane

RECENT_EVENTS = 8


async def scaling_view(state: ControlPlane) -> dict[str, Any]:
    """``autoscaling`` (None without a provider), ``instances`` and ``scaling_events``."""
    autoscaling = state.autoscaling
    if autoscaling.pool is None:
        return {"autoscaling": None, "instances": [], "scaling_events": []}
    now = datetime.now(UTC)
    rows = await autoscaling.store.list_instances(autoscaling.pool.pool, live_only=True)
    events = await autoscaling.store.list_events(limit=RECENT_EVENTS)
    instances = [
        {
            "provider_id": row.provider_id,
            "pool": row.pool,
            "state": row.state,
            "age_seconds": max(0.0, (now - row.launched_at).total_seconds()),
            # (phase, seconds after the launch call or None), in the order they happen
            "phases": list(row.cold_start().items()),
        }
        for row in rows
    ]
    return {
        "autoscaling": autoscaling.status(),
        "instances": instances,
        "scaling_events": [
            {
                "time": event.time.timestamp(),
                "pool": event.pool,
                "action": event.action,
                "from": event.from_count,
                "to": event.to_count,
                "reason": event.reason,
            }
            for event in events
        ],
    }
