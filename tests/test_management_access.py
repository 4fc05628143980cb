"""The management address behind the admin token: API routes, dashboard pages and login."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient

from control_plane.app import create_management_app
from control_plane.management.admin_token import admin_token_path, ensure_admin_token
from control_plane.serving.jobs import InferenceJob, Sender
from control_plane.settings import ControlPlaneSettings
from control_plane.state import CONFIG_KEY, ControlPlane
from paddler.protocol import GenerationRequest, SamplingParams

TOKEN = "admin-secret"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
API_ROUTES = [
    "/api/v1/agents",
    "/api/v1/agents/nobody",
    "/api/v1/pools",
    "/api/v1/pools/tiny/buffer",
    "/api/v1/events",
    "/metrics",
    "/openapi.json",
]
PAGES = ["/", "/playground", "/agents/nobody", "/live/overview", "/live/agents/nobody"]


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Quart]:
    state = ControlPlane(ControlPlaneSettings(state_dir=tmp_path, admin_token=TOKEN))
    await state.start()
    await state.ensure_pool("tiny", "/models/tiny.gguf", 2)
    yield create_management_app(state)
    state.closing.set()
    await state.stop()


def test_a_generated_token_is_kept_private_and_reused(tmp_path: Path) -> None:
    settings = ControlPlaneSettings(state_dir=tmp_path / "state")
    token = ensure_admin_token(settings)
    assert len(token) >= 32
    mode = stat.S_IMODE(admin_token_path(settings).stat().st_mode)
    assert mode == 0o600
    assert ensure_admin_token(settings) == token
    assert ensure_admin_token(ControlPlaneSettings(state_dir=tmp_path, admin_token="set")) == "set"


@pytest.mark.parametrize("path", API_ROUTES)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic admin-secret", TOKEN])
async def test_api_routes_answer_401_without_the_token(
    app: Quart, path: str, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await app.test_client().get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await response.get_json())["error"]["code"] == "admin_token_required"


@pytest.mark.parametrize("path", PAGES)
async def test_pages_send_browsers_to_the_login_page(app: Quart, path: str) -> None:
    response = await app.test_client().get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


async def test_health_and_login_need_nothing(app: Quart) -> None:
    client = app.test_client()
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/login")).status_code == 200


@pytest.mark.parametrize("path", [p for p in API_ROUTES if "events" not in p])
async def test_the_bearer_token_opens_api_routes(app: Quart, path: str) -> None:
    response = await app.test_client().get(path, headers=BEARER)
    assert response.status_code in (200, 404), await response.get_data()
    if response.status_code == 404:
        assert (await response.get_json())["error"]["code"] == "agent_not_found"


async def test_buffer_validation_names_the_field(app: Quart) -> None:
    client = app.test_client()
    for bad in ("0", "abc", "100000"):
        response = await client.get(f"/api/v1/pools/tiny/buffer?limit={bad}", headers=BEARER)
        assert response.status_code == 400
        error = (await response.get_json())["error"]
        assert error["param"] == "limit", error
        assert "limit" in error["message"]
    missing = await client.get("/api/v1/pools/nope/buffer", headers=BEARER)
    assert missing.status_code == 404
    assert (await missing.get_json())["error"]["code"] == "pool_not_found"
    empty = await client.get("/api/v1/pools/tiny/buffer?limit=5", headers=BEARER)
    assert await empty.get_json() == {"pool": "tiny", "size": 0, "data": []}


async def test_the_buffer_lists_jobs_in_serve_order_with_their_key(app: Quart) -> None:
    scheduler = current_state(app).scheduler
    request = GenerationRequest(kind="completion", prompt="hi", sampling=SamplingParams())
    for key, priority in (("batch", 2), ("batch", 2), ("web", 1), ("pager", 0)):
        scheduler.submit(InferenceJob(pool="tiny", request=request, sender=Sender(key, priority)))
    response = await app.test_client().get("/api/v1/pools/tiny/buffer", headers=BEARER)
    listed = [
        (entry["position"], entry["key"], entry["priority"])
        for entry in (await response.get_json())["data"]
    ]
    assert listed == [
        (1, "pager", "high"),
        (2, "web", "normal"),
        (3, "batch", "low"),
        (4, "batch", "low"),
    ]


async def test_openapi_documents_the_json_api(app: Quart) -> None:
    document = await (await app.test_client().get("/openapi.json", headers=BEARER)).get_json()
    assert document["info"]["title"] == "Paddler management API"
    buffer = document["paths"]["/api/v1/pools/{pool}/buffer"]["get"]
    assert [parameter["name"] for parameter in buffer["parameters"]] == ["pool", "limit"]
    assert "/login" not in document["paths"] and "/" not in document["paths"]


def current_state(app: Quart) -> ControlPlane:
    state: ControlPlane = app.config[CONFIG_KEY]
    return state


async def _log_in(client: QuartClient, token: str = TOKEN, next_page: str = "/") -> int:
    await client.get("/login")
    page = await (await client.get("/login")).get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    response = await client.post(
        "/login", form={"csrf_token": csrf, "token": token, "next": next_page}
    )
    return response.status_code


async def test_login_session_csrf_and_logout(app: Quart) -> None:
    client = app.test_client()
    assert await _log_in(client, token="wrong") == 401
    forged = await client.post("/login", form={"csrf_token": "forged", "token": TOKEN})
    assert forged.status_code == 400

    await client.get("/login")
    page = await (await client.get("/login")).get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    response = await client.post(
        "/login", form={"csrf_token": csrf, "token": TOKEN, "next": "//evil.example/"}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie

    overview = await client.get("/")
    assert overview.status_code == 200
    html = await overview.get_data(as_text=True)
    assert "paddler agent --control-plane" in html
    assert (await client.get("/api/v1/pools")).status_code == 200

    assert (await client.post("/logout")).status_code == 403
    session_csrf = html.split('name="csrf_token" value="')[1].split('"')[0]
    logout = await client.post("/logout", form={"csrf_token": session_csrf})
    assert logout.status_code == 302
    assert (await client.get("/")).status_code == 302
    assert (await client.get("/api/v1/pools")).status_code == 401
