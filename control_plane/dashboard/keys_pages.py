"""The dashboard's API key pages: every key with today's usage and a form to make one (its
secret shown once), and one key's limits with its hourly tokens over the last two days."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from quart import Blueprint, Response, redirect, render_template, request, url_for
from quart_schema import hide
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response as WerkzeugResponse

from control_plane import errors
from control_plane.dashboard.pool_page import field_errors
from control_plane.db.usage_store import UsageRow
from control_plane.management.admin_guard import current_session
from control_plane.management.keys_api import (
    LIMIT_FIELDS,
    NewKey,
    create_key,
    find_key,
    key_view,
    revoke_key,
)
from control_plane.state import current_control_plane

keys_pages = Blueprint("keys_pages", __name__)

FORM_FIELDS = ("name", "team", "models", "priority", "expires_at", *LIMIT_FIELDS)
CHART_HOURS = 48
BAR_SLOT = 12  # px per hour; each bar leaves a 2 px gap
CHART_HEIGHT = 120


@dataclass(frozen=True)
class Bar:
    x: int
    y: float
    height: float
    hour: datetime
    tokens: int


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    width: int
    height: int
    peak: int
    total: int


def key_form_body(form: MultiDict[str, str]) -> dict[str, Any]:
    """The form as a new key's body: blank fields left out, models split on commas."""
    values = {field: form.get(field, "").strip() for field in FORM_FIELDS}
    body: dict[str, Any] = {field: value for field, value in values.items() if value}
    if "models" in body:
        body["models"] = [model.strip() for model in body["models"].split(",") if model.strip()]
    return body


def hour_start(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def hourly_chart(rows: Iterable[UsageRow], now: datetime) -> Chart:
    """Tokens per hour over the last ``CHART_HOURS`` hours, this one included, as SVG bars."""
    first = hour_start(now) - timedelta(hours=CHART_HOURS - 1)
    tokens: dict[datetime, int] = defaultdict(int)
    for row in rows:
        tokens[row.hour] += row.prompt_tokens + row.completion_tokens
    hours = [first + timedelta(hours=index) for index in range(CHART_HOURS)]
    peak = max((tokens[hour] for hour in hours), default=0)
    bars = []
    for index, hour in enumerate(hours):
        height = CHART_HEIGHT * tokens[hour] / peak if peak else 0.0
        bars.append(
            Bar(
                index * BAR_SLOT,
                round(CHART_HEIGHT - height, 1),
                round(height, 1),
                hour,
                tokens[hour],
            )
        )
    return Chart(
        bars, CHART_HOURS * BAR_SLOT, CHART_HEIGHT, peak, sum(tokens[hour] for hour in hours)
    )


async def _keys_page(values: dict[str, Any], problems: dict[str, str], status: int) -> Response:
    state = current_control_plane()
    now = datetime.now(UTC)
    today: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for row in await state.usage_store.rows(
        since=now.replace(hour=0, minute=0, second=0, microsecond=0)
    ):
        today[row.key_id][0] += row.requests
        today[row.key_id][1] += row.prompt_tokens + row.completion_tokens
    records = await state.key_store.list()
    page = await render_template(
        "keys.html",
        session=current_session(),
        keys=[(key_view(record, now), today.get(record.id, [0, 0])) for record in records],
        values=values,
        errors=problems,
        limit_fields=LIMIT_FIELDS,
    )
    return Response(page, status=status, mimetype="text/html")


async def _key_page(name: str, secret: str | None = None, status: int = 200) -> Response:
    state = current_control_plane()
    record = await find_key(state, name)
    now = datetime.now(UTC)
    since = hour_start(now) - timedelta(hours=CHART_HOURS - 1)
    rows = await state.usage_store.rows(key_ids=[record.id], since=since)
    page = await render_template(
        "key.html",
        session=current_session(),
        key=key_view(record, now),
        secret=secret,
        chart=hourly_chart(rows, now),
        limit_fields=LIMIT_FIELDS,
    )
    return Response(page, status=status, mimetype="text/html")


@keys_pages.get("/keys")
@hide
async def index() -> Response:
    return await _keys_page({}, {}, 200)


@keys_pages.post("/keys")
@hide
async def create() -> Response:
    """Make the key and show its secret, this once; a refused form comes back marked."""
    body = key_form_body(await request.form)
    try:
        record, secret = await create_key(current_control_plane(), NewKey.model_validate(body))
    except ValidationError as error:
        problems = {path.split("[")[0]: why for path, why in field_errors(error).items()}
        return await _keys_page(body, problems, 400)
    except errors.OpenAIError as error:
        if error.status != 409:
            raise
        return await _keys_page(body, {"name": error.message}, 409)
    return await _key_page(record.name, secret, 201)


@keys_pages.get("/keys/<name>")
@hide
async def show(name: str) -> Response:
    return await _key_page(name)


@keys_pages.post("/keys/<name>/revoke")
@hide
async def revoke(name: str) -> WerkzeugResponse:
    await revoke_key(current_control_plane(), name)
    return redirect(url_for("keys_pages.show", name=name), 303)
