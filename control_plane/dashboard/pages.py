"""The operator's dashboard: server-rendered pages, kept live by the streams in live_views."""

from __future__ import annotations

import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

from quart import Blueprint, Quart, render_template, request
from quart_schema import hide

from control_plane import errors
from control_plane.addresses import is_wildcard, split_address
from control_plane.dashboard.live_views import fleet_view, live_agent
from control_plane.dashboard.scaling_view import scaling_view
from control_plane.management.admin_guard import current_session
from control_plane.state import ControlPlane, current_control_plane

dashboard = Blueprint("dashboard", __name__)


def templates_directory() -> Path:
    """``templates/`` of a source checkout, else where the wheel installed it."""
    checkout = Path(__file__).resolve().parents[2] / "templates"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "paddler" / "templates"


def install_template_filters(app: Quart) -> None:
    app.add_template_filter(_clock, "clock")
    app.add_template_filter(_datetime, "datetime")


def _clock(unix_time: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(unix_time))


def _datetime(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def add_agent_command(state: ControlPlane, control_plane_url: str) -> str:
    """The exact ``paddler agent`` command that joins this control plane."""
    words = ["paddler", "agent", "--control-plane", control_plane_url]
    if state.settings.agent_token:
        words += ["--token", state.settings.agent_token]
    words += ["--model", "MODEL.gguf"]
    return " ".join(shlex.quote(word) for word in words)


def inference_url(state: ControlPlane) -> str:
    """The inference API's address as this browser can reach it."""
    host, port = split_address(state.settings.inference_addr)
    if is_wildcard(host):
        host = split_address(request.host)[0] or request.host
    return f"{request.scheme}://{host}:{port}"


@dashboard.get("/")
@hide
async def overview() -> str:
    state = current_control_plane()
    return await render_template(
        "overview.html",
        session=current_session(),
        add_agent_command=add_agent_command(state, request.host_url.rstrip("/")),
        **fleet_view(state),
        **await scaling_view(state),
    )


@dashboard.get("/agents/<agent_id>")
@hide
async def agent_page(agent_id: str) -> str:
    state = current_control_plane()
    record = await state.store.get_agent(agent_id)
    if record is None:
        raise errors.OpenAIError(404, f"No agent with id {agent_id!r}.", code="agent_not_found")
    return await render_template(
        "agent.html",
        session=current_session(),
        record=record,
        agent=live_agent(state, agent_id),
        connections=await state.store.list_connections(agent_id),
    )


@dashboard.get("/playground")
@hide
async def playground() -> str:
    state = current_control_plane()
    return await render_template(
        "playground.html",
        session=current_session(),
        pools=sorted(state.pools),
        inference_url=inference_url(state),
        api_keys_required=not state.tenancy.directory.open,
    )
