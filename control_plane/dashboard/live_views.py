"""Server-Sent Events for live views: fleet snapshots as JSON, dashboard parts as HTML.

Each stream polls the fleet a few times a second and sends an event when what it shows
changed, and at least once a second either way.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from quart import Blueprint, Response, render_template, stream_with_context
from quart_schema import hide

from control_plane import server_sent_events
from control_plane.dashboard.scaling_view import scaling_view
from control_plane.management.pools_api import pool_view
from control_plane.state import ControlPlane, current_control_plane
from control_plane.telemetry.snapshot import AgentSnapshot, agent_snapshots, pool_snapshots

live_views = Blueprint("live_views", __name__)

POLL_SECONDS = 0.25
RESEND_SECONDS = 1.0


def fleet_view(state: ControlPlane) -> dict[str, Any]:
    """Pools (with their recent request rate), connected agents and the latest errors."""
    pools = []
    for pool in pool_snapshots(state):
        pools.append(
            {
                **pool.as_json(),
                "requests_per_minute": state.activity.requests_per_minute(pool.name),
                "routing": state.routing.pool(pool.name).as_json(),
            }
        )
    return {
        "pools": pools,
        "agents": [agent.as_json() for agent in agent_snapshots(state)],
        "errors": [error.as_json() for error in state.activity.recent_errors()],
    }


def live_agent(state: ControlPlane, agent_id: str) -> AgentSnapshot | None:
    link = state.fleet.get(agent_id)
    return AgentSnapshot.of(link) if link else None


def _stream(state: ControlPlane, event: str, render: Callable[[], Awaitable[str]]) -> Response:
    @stream_with_context
    async def events() -> AsyncIterator[bytes]:
        last_text, last_sent = "", 0.0
        while not state.closing.is_set():
            text = await render()
            now = time.monotonic()
            if text != last_text or now - last_sent >= RESEND_SECONDS:
                yield server_sent_events.event(text, event)
                last_text, last_sent = text, now
            await asyncio.sleep(POLL_SECONDS)

    return server_sent_events.streaming_response(events())


@live_views.get("/api/v1/events")
async def fleet_events() -> Response:
    """``fleet`` events: JSON with ``pools``, ``agents`` and ``errors``, as on the overview."""
    state = current_control_plane()

    async def render() -> str:
        return json.dumps(fleet_view(state), sort_keys=True)

    return _stream(state, "fleet", render)


@live_views.get("/live/overview")
@hide
async def overview_stream() -> Response:
    state = current_control_plane()

    async def render() -> str:
        scaling = await scaling_view(state)
        return await render_template("overview_live.html", **fleet_view(state), **scaling)

    return _stream(state, "fragment", render)


@live_views.get("/live/pools/<name>")
@hide
async def pool_stream(name: str) -> Response:
    state = current_control_plane()

    async def render() -> str:
        pool = state.pools.get(name)
        if pool is None:
            return '<p class="muted">This pool was deleted.</p>'
        return await render_template(
            "pool_live.html", pool=pool_view(state, pool), routing=state.routing.pool(name)
        )

    return _stream(state, "fragment", render)


@live_views.get("/live/agents/<agent_id>")
@hide
async def agent_stream(agent_id: str) -> Response:
    state = current_control_plane()

    async def render() -> str:
        return await render_template("agent_live.html", agent=live_agent(state, agent_id))

    return _stream(state, "fragment", render)
