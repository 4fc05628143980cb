"""The dashboard's pool page: the pool's agents, live, and its desired-state form."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from quart import Blueprint, Response, redirect, render_template, request, url_for
from quart_schema import hide
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response as WerkzeugResponse

from control_plane import errors
from control_plane.management.admin_guard import current_session
from control_plane.management.pool_changes import pool_not_found, set_desired_state
from control_plane.management.pools_api import pool_view
from control_plane.serving.desired_state import (
    InferenceDefaults,
    PoolSpec,
    RoutingSettings,
    stored,
)
from control_plane.state import current_control_plane

pool_page = Blueprint("pool_page", __name__)

DEFAULT_FIELDS = tuple(InferenceDefaults.model_fields)
SCALING_FIELDS = ("min_agents", "max_agents")
ROUTING_FIELDS = tuple(RoutingSettings.model_fields)


def form_values(form: MultiDict[str, str]) -> dict[str, Any]:
    """The form as a desired-state body: blank fields left out, nested ones nested."""

    def filled(prefix: str, names: tuple[str, ...]) -> dict[str, str]:
        values = {name: form.get(f"{prefix}{name}", "").strip() for name in names}
        return {name: value for name, value in values.items() if value}

    body: dict[str, Any] = filled("", ("model_source", "slots", "context_size"))
    template = form.get("chat_template", "")
    if template.strip():
        body["chat_template"] = template.replace("\r\n", "\n")
    body["inference_defaults"] = filled("inference_defaults.", DEFAULT_FIELDS)
    body["scaling"] = filled("scaling.", SCALING_FIELDS)
    body["routing"] = filled("routing.", ROUTING_FIELDS)
    return body


def field_errors(error: ValidationError) -> dict[str, str]:
    """Each failing field (its path, e.g. ``scaling.min_agents``) and why."""
    found: dict[str, str] = {}
    for detail in error.errors():
        found.setdefault(errors.field_path(detail["loc"]), detail["msg"])
    return found


async def _render(
    name: str, values: dict[str, Any], problems: dict[str, str], status: int
) -> Response:
    state = current_control_plane()
    pool = state.pools.get(name)
    if pool is None:
        raise pool_not_found(name)
    page = await render_template(
        "pool.html",
        session=current_session(),
        pool=pool_view(state, pool),
        routing=state.routing.pool(name),
        values=values,
        errors=problems,
        default_fields=DEFAULT_FIELDS,
        saved=request.args.get("saved"),
    )
    return Response(page, status=status, mimetype="text/html")


@pool_page.get("/pools/<name>")
@hide
async def show(name: str) -> Response:
    pool = current_control_plane().pools.get(name)
    if pool is None:
        raise pool_not_found(name)
    desired = stored(pool.settings)
    values: dict[str, Any] = (
        desired.model_dump()
        if desired is not None
        else {"model_source": pool.model_source, "slots": pool.slots_per_agent}
    )
    return await _render(name, values, {}, 200)


@pool_page.post("/pools/<name>")
@hide
async def change(name: str) -> Response | WerkzeugResponse:
    """Validate the form (errors shown next to their fields), then store and roll it out."""
    body = form_values(await request.form)
    try:
        spec = PoolSpec.model_validate(body)
        updated = await set_desired_state(current_control_plane(), name, spec)
    except ValidationError as error:
        return await _render(name, body, field_errors(error), 400)
    except errors.OpenAIError as error:
        if error.status != 422:
            raise
        return await _render(name, body, {error.param or "": error.message}, 422)
    version = stored(updated.settings)
    return redirect(
        url_for("pool_page.show", name=name, saved=version.version if version else ""), 303
    )
