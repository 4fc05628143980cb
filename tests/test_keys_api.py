"""API keys and usage over the management API and the dashboard's key pages: a real control
plane app with its SQLite store, driven through Quart's test client."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient

from control_plane.db.usage_store import UsageDelta
from control_plane.state import ControlPlane
from control_plane.tenancy.secrets import secret_digest
from tests.management_app import BEARER
from tests.test_management_access import _log_in as log_in

HOUR = datetime(2025, 3, 10, 14, tzinfo=UTC)


async def _body(response: Any, status: int) -> Any:
    body = await response.get_json()
    assert response.status_code == status, body
    return body


async def _create(client: QuartClient, name: str, **fields: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/keys", headers=BEARER, json={"name": name, **fields})
    created: dict[str, Any] = await _body(response, 201)
    return created


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/keys"),
        ("GET", "/api/v1/keys"),
        ("GET", "/api/v1/keys/a"),
        ("PATCH", "/api/v1/keys/a"),
        ("POST", "/api/v1/keys/a/revoke"),
        ("DELETE", "/api/v1/keys/a"),
        ("GET", "/api/v1/usage"),
    ],
)
async def test_key_routes_need_the_admin_token(app: Quart, method: str, path: str) -> None:
    client = app.test_client()
    response = await client.open(path, method=method, json={"name": "a"})
    assert (await _body(response, 401))["error"]["code"] == "admin_token_required"


async def test_a_new_key_shows_its_secret_once_and_keeps_only_its_digest(
    app: Quart, plane: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="paddler.keys"):
        created = await _create(
            client, "team-a.bot", team="A", models=["tiny"], requests_per_minute=60, priority="high"
        )
    secret, key = created["secret"], created["key"]
    assert re.fullmatch(r"sk-pfp-[A-Za-z0-9_-]{40}", secret)
    assert key["prefix"] == secret[:12]
    assert key["status"] == "active" and key["team"] == "A" and key["models"] == ["tiny"]
    assert key["requests_per_minute"] == 60 and key["tokens_per_minute"] is None
    assert key["priority"] == "high" and key["revoked_at"] is None
    assert datetime.fromisoformat(key["created_at"]).tzinfo is not None
    assert "digest" not in key
    record = await plane.key_store.get("team-a.bot")
    assert record is not None and record.digest == secret_digest(secret)
    assert "created API key team-a.bot" in caplog.text and secret not in caplog.text

    read = await _body(await client.get("/api/v1/keys/team-a.bot", headers=BEARER), 200)
    assert read == key and secret not in str(read)
    again = await client.post("/api/v1/keys", headers=BEARER, json={"name": "team-a.bot"})
    assert (await _body(again, 409))["error"]["code"] == "key_exists"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "has space"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "ok", "requests_per_minute": -1}, "requests_per_minute"),
        ({"name": "ok", "max_buffered": -1}, "max_buffered"),
        ({"name": "ok", "daily_token_budget": 2**40}, "daily_token_budget"),
        ({"name": "ok", "priority": "urgent"}, "priority"),
        ({"name": "ok", "models": []}, "models"),
        ({"name": "ok", "expires_at": "next tuesday"}, "expires_at"),
        ({"name": "ok", "digest": "00"}, "digest"),
    ],
)
async def test_bad_keys_are_refused_naming_the_field(
    app: Quart, body: dict[str, Any], param: str
) -> None:
    response = await app.test_client().post("/api/v1/keys", headers=BEARER, json=body)
    error = (await _body(response, 400))["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


async def test_list_change_and_revoke_keys(app: Quart, caplog: pytest.LogCaptureFixture) -> None:
    client = app.test_client()
    await _create(client, "b", tokens_per_minute=1000, team="T")
    await _create(client, "a", expires_at="2020-01-01T00:00:00")
    listed = await _body(await client.get("/api/v1/keys", headers=BEARER), 200)
    assert [(key["name"], key["status"]) for key in listed["data"]] == [
        ("a", "expired"),
        ("b", "active"),
    ]
    assert listed["data"][0]["expires_at"] == "2020-01-01T00:00:00+00:00"

    with caplog.at_level(logging.INFO, logger="paddler.keys"):
        changed = await client.patch(
            "/api/v1/keys/b",
            headers=BEARER,
            json={"tokens_per_minute": None, "max_concurrent": 2, "disabled": True},
        )
    key = await _body(changed, 200)
    assert key["tokens_per_minute"] is None and key["max_concurrent"] == 2
    assert key["status"] == "disabled" and key["team"] == "T", "fields left out stay"
    assert (
        "changed API key b: disabled=True, max_concurrent=2, tokens_per_minute=null" in caplog.text
    )
    enabled = await client.patch("/api/v1/keys/b", headers=BEARER, json={"disabled": False})
    assert (await _body(enabled, 200))["status"] == "active"
    bad = await client.patch("/api/v1/keys/b", headers=BEARER, json={"max_concurrent": 0})
    assert (await _body(bad, 400))["error"]["param"] == "max_concurrent"

    revoked = await _body(await client.post("/api/v1/keys/b/revoke", headers=BEARER), 200)
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    twice = await _body(await client.delete("/api/v1/keys/b", headers=BEARER), 200)
    assert twice["revoked_at"] == revoked["revoked_at"]
    deleted = await _body(await client.delete("/api/v1/keys/a", headers=BEARER), 200)
    assert deleted["status"] == "revoked"
    listed = await _body(await client.get("/api/v1/keys", headers=BEARER), 200)
    assert [key["status"] for key in listed["data"]] == ["revoked", "revoked"]
    refused = await client.patch("/api/v1/keys/b", headers=BEARER, json={"disabled": False})
    assert (await _body(refused, 409))["error"]["code"] == "key_revoked"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/keys/nobody"),
        ("PATCH", "/api/v1/keys/nobody"),
        ("POST", "/api/v1/keys/nobody/revoke"),
        ("DELETE", "/api/v1/keys/nobody"),
        ("GET", "/api/v1/usage?key=nobody"),
    ],
)
async def test_unknown_keys_are_404(app: Quart, method: str, path: str) -> None:
    response = await app.test_client().open(path, method=method, headers=BEARER, json={})
    assert (await _body(response, 404))["error"]["code"] == "key_not_found"


async def _record_usage(plane: ControlPlane, key_id: int) -> None:
    await plane.usage_store.add(
        [
            UsageDelta(key_id, "tiny", HOUR, 2, 10, 5, 0, 0.25),
            UsageDelta(key_id, "tiny", HOUR + timedelta(hours=1), 1, 7, 3, 1, 0.5),
            UsageDelta(key_id, "big", HOUR, 1, 100, 50),
            UsageDelta(0, "tiny", HOUR, 4, 40, 20),
            UsageDelta(key_id, "tiny", HOUR + timedelta(days=1), 1, 1, 1),
        ]
    )


async def test_usage_by_hour_and_day_with_filters_and_totals(
    app: Quart, plane: ControlPlane
) -> None:
    client = app.test_client()
    await _create(client, "metered")
    record = await plane.key_store.get("metered")
    assert record is not None
    await _record_usage(plane, record.id)

    async def usage(**query: str) -> Any:
        return await _body(
            await client.get("/api/v1/usage", headers=BEARER, query_string=query), 200
        )

    hourly = await usage(key="metered", model="tiny", until="2025-03-11T00:00:00")
    assert hourly["data"] == [
        {
            "key": "metered",
            "model": "tiny",
            "period_start": "2025-03-10T14:00:00+00:00",
            "requests": 2,
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "errors": 0,
            "queue_seconds": 0.25,
        },
        {
            "key": "metered",
            "model": "tiny",
            "period_start": "2025-03-10T15:00:00+00:00",
            "requests": 1,
            "prompt_tokens": 7,
            "completion_tokens": 3,
            "total_tokens": 10,
            "errors": 1,
            "queue_seconds": 0.5,
        },
    ]
    assert hourly["totals"] == {
        "requests": 3,
        "prompt_tokens": 17,
        "completion_tokens": 8,
        "total_tokens": 25,
        "errors": 1,
        "queue_seconds": 0.75,
    }

    daily = await usage(granularity="day", since="2025-03-10")
    assert [
        (row["period_start"][:10], row["key"], row["model"], row["requests"])
        for row in daily["data"]
    ] == [
        ("2025-03-10", "(bootstrap)", "tiny", 4),
        ("2025-03-10", "metered", "big", 1),
        ("2025-03-10", "metered", "tiny", 3),
        ("2025-03-11", "metered", "tiny", 1),
    ]
    assert daily["totals"]["total_tokens"] == 15 + 10 + 150 + 60 + 2
    bootstrap = await usage(key="(bootstrap)")
    assert [row["total_tokens"] for row in bootstrap["data"]] == [60]
    assert (await usage(since="2030-01-01"))["data"] == []
    bad = await client.get("/api/v1/usage?granularity=week", headers=BEARER)
    assert (await _body(bad, 400))["error"]["param"] == "granularity"


async def test_keys_and_usage_are_in_the_openapi_document(app: Quart) -> None:
    document = await _body(await app.test_client().get("/openapi.json", headers=BEARER), 200)
    paths = document["paths"]
    assert {"post", "get"} <= set(paths["/api/v1/keys"])
    assert {"get", "patch", "delete"} <= set(paths["/api/v1/keys/{name}"])
    assert "post" in paths["/api/v1/keys/{name}/revoke"] and "get" in paths["/api/v1/usage"]
    assert "/keys" not in paths, "dashboard pages stay out of the API document"


async def test_dashboard_form_secret_once_chart_and_revoke(app: Quart, plane: ControlPlane) -> None:
    client = app.test_client()
    anonymous = await client.get("/keys")
    assert (anonymous.status_code, anonymous.headers["Location"]) == (302, "/login?next=/keys")
    assert (await client.post("/keys", form={"name": "x"})).status_code == 401
    assert await log_in(client) == 302
    page = await (await client.get("/keys")).get_data(as_text=True)
    assert "No API key yet." in page
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]

    forged = await client.post("/keys", form={"csrf_token": "forged", "name": "web"})
    assert forged.status_code == 403
    refused = await client.post(
        "/keys", form={"csrf_token": csrf, "name": "web app", "requests_per_minute": "-5"}
    )
    assert refused.status_code == 400
    refused_page = await refused.get_data(as_text=True)
    assert 'data-error-for="name"' in refused_page
    assert 'data-error-for="requests_per_minute"' in refused_page
    assert 'value="web app"' in refused_page, "the form keeps what was typed"

    form = {"csrf_token": csrf, "name": "web", "models": "tiny, big", "tokens_per_minute": "500"}
    created = await client.post("/keys", form=form)
    assert created.status_code == 201
    shown = await created.get_data(as_text=True)
    secret = re.search(r'<pre id="secret">(sk-pfp-[^<]+)</pre>', shown)
    assert secret is not None
    record = await plane.key_store.get("web")
    assert record is not None and record.models == ("tiny", "big")
    assert record.digest == secret_digest(secret.group(1))
    taken = await client.post("/keys", form=form)
    assert taken.status_code == 409 and "already exists" in await taken.get_data(as_text=True)

    now = datetime.now(UTC)
    await plane.usage_store.add(
        [
            UsageDelta(record.id, "tiny", now, 3, 300, 100),
            UsageDelta(record.id, "tiny", now - timedelta(hours=5), 1, 100, 100),
            UsageDelta(record.id, "tiny", now - timedelta(hours=60), 1, 999, 999),
        ]
    )
    key_page = await (await client.get("/keys/web")).get_data(as_text=True)
    assert secret.group(1) not in key_page, "the secret is shown only once"
    bars = re.findall(r'<rect class="bar"[^>]*data-tokens="(\d+)"', key_page)
    assert len(bars) == 48 and bars[-1] == "400" and bars[-6] == "200"
    assert sum(map(int, bars)) == 600 and 'height="120.0"' in key_page
    listing = await (await client.get("/keys")).get_data(as_text=True)
    assert '<td class="tokens-today">' in listing and secret.group(1) not in listing

    revoked = await client.post("/keys/web/revoke", form={"csrf_token": csrf})
    assert revoked.status_code == 303 and revoked.headers["Location"] == "/keys/web"
    after = await (await client.get("/keys/web")).get_data(as_text=True)
    assert 'id="revoked-at"' in after and 'id="revoke-key"' not in after
    assert (await client.get("/keys/nobody")).status_code == 404
