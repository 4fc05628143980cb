"""The management address against hostile input: login redirects, TLS behind a proxy, CORS,
credentials in model sources, odd query parameters, an exposed agent socket (issue 14: 9, 18)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient

from control_plane.app import create_inference_app, create_management_app
from control_plane.management.login import safe_next
from control_plane.settings import ControlPlaneSettings
from control_plane.state import ControlPlane
from paddler.logs import TEXT_FORMAT, JsonLineFormatter, RedactingFormatter, redact_secrets
from paddler.settings import SettingsError
from tests.processes import ADMIN_HEADERS
from tests.processes import ControlPlane as ControlPlaneProcess

TOKEN = "admin-secret"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
OFF_SITE = [
    "/\t/evil.com",
    "/\n/evil.com",
    "/\r\n/evil.com",
    "/\x00/evil.com",
    "/ /evil.com",
    "/\u3000/evil.com",
    "//evil.com",
    "/\\evil.com",
    "\\/evil.com",
    "https://evil.com/",
    "http:evil.com",
    "javascript:alert(1)",
    "evil.com",
    "",
    "/\ud800",
]
SECRET_SOURCE = (
    "https://alice:hunter2@models.example/m/tiny.gguf"
    "?X-Amz-Credential=AKIDEXAMPLE&X-Amz-Signature=f00dfeed&X-Amz-Expires=60"
)
SECRETS = ("hunter2", "AKIDEXAMPLE", "f00dfeed")


async def started(tmp_path: Path, **settings: Any) -> ControlPlane:
    state = ControlPlane(ControlPlaneSettings(state_dir=tmp_path, admin_token=TOKEN, **settings))
    await state.start()
    return state


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    state = await started(tmp_path)
    yield state
    state.closing.set()
    await state.stop()


async def login_csrf(client: QuartClient) -> str:
    page = await (await client.get("/login")).get_data(as_text=True)
    return page.split('name="csrf_token" value="')[1].split('"')[0]


async def log_in(
    client: QuartClient,
    next_page: str = "/",
    headers: dict[str, str] | None = None,
    scope_base: dict[str, Any] | None = None,
) -> Any:
    csrf = await login_csrf(client)
    return await client.post(
        "/login",
        form={"csrf_token": csrf, "token": TOKEN, "next": next_page},
        headers=headers or {},
        scope_base=scope_base,
    )


@pytest.mark.parametrize("target", OFF_SITE)
def test_next_is_a_path_on_this_host_or_nothing(target: str) -> None:
    assert safe_next(target) == "/"


@pytest.mark.parametrize(
    ("target", "kept"),
    [
        ("/", "/"),
        ("/pools/tiny?tab=agents", "/pools/tiny?tab=agents"),
        ("/pools/модель", "/pools/%D0%BC%D0%BE%D0%B4%D0%B5%D0%BB%D1%8C"),
        ("/%09/evil.com", "/%09/evil.com"),  # still encoded: a path on this host
    ],
)
def test_paths_on_this_host_are_kept(target: str, kept: str) -> None:
    assert safe_next(target) == kept


@pytest.mark.parametrize("target", ["/%09/evil.com", "/%0A/x", "//evil.com", "/%5C/evil.com"])
async def test_login_never_redirects_off_site_nor_fails(plane: ControlPlane, target: str) -> None:
    """``next`` arrives percent-encoded in the query and the form, as browsers send it."""
    client = create_management_app(plane).test_client()
    shown = await client.get(f"/login?next={target}")
    assert shown.status_code == 200
    csrf = await login_csrf(client)
    response = await client.post(
        "/login",
        data=f"csrf_token={csrf}&token={TOKEN}&next={target}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("/") and not location.startswith("//")
    assert all(0x21 <= ord(character) < 0x7F for character in location), location


@pytest.mark.parametrize("target", OFF_SITE[:-1])
async def test_login_form_field_falls_back_to_the_overview(
    plane: ControlPlane, target: str
) -> None:
    response = await log_in(create_management_app(plane).test_client(), next_page=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


async def test_pages_with_odd_paths_still_send_browsers_to_log_in(plane: ControlPlane) -> None:
    client = create_management_app(plane).test_client()
    for path in ("/%0A/x", "/%09/evil.com", "//evil.com"):
        response = await client.get(path)
        assert response.status_code in (302, 404), path
        if response.status_code == 302:
            location = response.headers["Location"]
            assert location.startswith("/login?next="), location


def secure(response: Any) -> bool:
    [cookie] = [
        cookie
        for cookie in response.headers.getlist("Set-Cookie")
        if cookie.startswith("paddler_session=")
    ]
    return "; Secure" in cookie


async def test_session_cookie_is_secure_over_tls_and_behind_a_trusted_proxy(
    tmp_path: Path,
) -> None:
    state = await started(tmp_path, trusted_proxies="10.0.0.7, 192.168.0.0/24")
    try:
        app = create_management_app(state)
        https = {"X-Forwarded-Proto": "https"}
        proxy = {"client": ("10.0.0.7", 40000)}
        other_proxy = {"client": ("192.168.0.9", 40000)}
        stranger = {"client": ("10.0.0.8", 40000)}
        assert secure(await log_in(app.test_client(), headers=https, scope_base=proxy))
        assert secure(await log_in(app.test_client(), headers=https, scope_base=other_proxy))
        assert not secure(await log_in(app.test_client(), headers=https, scope_base=stranger))
        assert not secure(await log_in(app.test_client(), scope_base=proxy))
        appended = {"X-Forwarded-Proto": "https, http"}  # the proxy's own word is the last
        assert not secure(await log_in(app.test_client(), headers=appended, scope_base=proxy))
        tls = {"scheme": "https", "client": ("10.0.0.8", 40000)}
        assert secure(await log_in(app.test_client(), scope_base=tls))
    finally:
        state.closing.set()
        await state.stop()


async def test_without_trusted_proxies_no_client_makes_itself_secure(plane: ControlPlane) -> None:
    app = create_management_app(plane)
    headers = {"X-Forwarded-Proto": "https"}
    loopback = {"client": ("127.0.0.1", 40000)}
    assert not secure(await log_in(app.test_client(), headers=headers, scope_base=loopback))


def test_trusted_proxies_must_be_addresses() -> None:
    with pytest.raises(SettingsError, match=r"--trusted-proxies: 'proxy\.example'"):
        ControlPlaneSettings(trusted_proxies="10.0.0.1,proxy.example")


async def cors(app: Quart, origin: str | None, *, preflight: bool = False) -> dict[str, str]:
    headers = {"Origin": origin} if origin else {}
    client = app.test_client()
    if preflight:
        headers["Access-Control-Request-Method"] = "POST"
        response = await client.options("/v1/chat/completions", headers=headers)
    else:
        response = await client.get("/v1/models", headers=headers)
    return {
        name.lower(): value
        for name, value in response.headers.items()
        if name.lower().startswith("access-control-")
    }


async def test_cors_only_for_the_dashboard_and_configured_origins(tmp_path: Path) -> None:
    state = await started(
        tmp_path / "a",
        management_addr="127.0.0.1:18060",
        cors_origins="https://app.example, https://other.example/",
    )
    try:
        app = create_inference_app(state)
        assert await cors(app, None) == {}
        assert await cors(app, "https://evil.example") == {}
        assert await cors(app, "https://evil.example", preflight=True) == {}
        for allowed in ("https://app.example", "https://other.example", "http://127.0.0.1:18060"):
            granted = await cors(app, allowed)
            assert granted["access-control-allow-origin"] == allowed
            preflight = await cors(app, allowed, preflight=True)
            assert "POST" in preflight["access-control-allow-methods"]
        assert await cors(app, "http://127.0.0.1:18061") == {}  # another port of this host
    finally:
        state.closing.set()
        await state.stop()
    state = await started(tmp_path / "b", cors_origins="*")
    try:
        app = create_inference_app(state)
        granted = await cors(app, "https://anyone.example")
        assert granted["access-control-allow-origin"] == "*"
    finally:
        state.closing.set()
        await state.stop()


async def test_cors_is_off_by_default_for_foreign_origins(plane: ControlPlane) -> None:
    app = create_inference_app(plane)
    assert await cors(app, "https://evil.example") == {}
    assert await cors(app, "null") == {}


@pytest.mark.parametrize("limit", ["²", "١٢", "1e3", "-1", "0", "1001", " 5", "5 "])
async def test_scaling_limits_answer_400_naming_the_field(plane: ControlPlane, limit: str) -> None:
    client = create_management_app(plane).test_client()
    for path in ("/api/v1/instances", "/api/v1/scaling-events"):
        response = await client.get(path, query_string={"limit": limit}, headers=BEARER)
        assert response.status_code == 400, (path, limit)
        assert (await response.get_json())["error"]["param"] == "limit"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://alice:hunter2@h/m.gguf", "https://REDACTED@h/m.gguf"),
        ("https://token@h/m.gguf", "https://REDACTED@h/m.gguf"),
        (
            "serving https://h/m.gguf?X-Amz-Signature=abc&X-Amz-Date=1&api_key=k#sha256=00",
            "serving https://h/m.gguf?X-Amz-Signature=REDACTED&X-Amz-Date=1&api_key=REDACTED"
            "#sha256=00",
        ),
        (
            "https://h.blob.example/m.gguf?sv=1&sig=zz",
            "https://h.blob.example/m.gguf?sv=1&sig=REDACTED",
        ),
        ("s3://bucket/models/m.gguf", "s3://bucket/models/m.gguf"),
        ("/models/m.gguf?token=x", "/models/m.gguf?token=x"),  # a path, not a URL
        ("https://h/m.gguf?page=2", "https://h/m.gguf?page=2"),
    ],
)
def test_redaction(text: str, shown: str) -> None:
    assert redact_secrets(text) == shown


@pytest.mark.parametrize("inner", [logging.Formatter(TEXT_FORMAT), JsonLineFormatter()])
def test_log_lines_are_redacted(inner: logging.Formatter) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter(inner))
    logger = logging.getLogger("paddler.test_redaction")
    logger.addHandler(handler)
    try:
        logger.warning("swap to %s failed", SECRET_SOURCE)
        try:
            raise ValueError(f"cannot read {SECRET_SOURCE}")
        except ValueError:
            logger.exception("download failed")
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert "models.example/m/tiny.gguf" in written
    assert not [secret for secret in SECRETS if secret in written], written


def test_model_source_credentials_never_reach_logs_or_the_api(tmp_path: Path) -> None:
    """A real control plane: the pool's source is kept as given, and shown redacted."""
    plane = ControlPlaneProcess(tmp_path, "--log-format", "json")
    plane.start()
    try:
        body = {"name": "tiny", "model_source": SECRET_SOURCE, "slots": 1}
        created = httpx.post(
            plane.management_url + "/api/v1/pools", json=body, headers=ADMIN_HEADERS
        )
        assert created.status_code == 201, created.text
        outputs = [created.text]
        for path in ("/api/v1/pools", "/api/v1/pools/tiny"):
            response = plane.management_get(path)
            assert response.status_code == 200
            outputs.append(response.text)
        with httpx.stream(
            "GET", plane.management_url + "/api/v1/events", headers=ADMIN_HEADERS, timeout=10
        ) as events:
            for line in events.iter_lines():
                if line.startswith("data:"):
                    outputs.append(line)
                    break
        assert "models.example/m/tiny.gguf" in json.loads(created.text)["model_source"]
        plane.stop()
        outputs.append(plane.log(tail=None))
        assert "models.example" in outputs[-1], "the pool's creation is logged"
        for output in outputs:
            assert not [secret for secret in SECRETS if secret in output], output
    finally:
        plane.stop()


@pytest.mark.parametrize("address", ["0.0.0.0:8060", "[::]:8060", "10.0.0.5:8060", "host:8060"])
def test_an_exposed_agent_socket_needs_the_agent_token(address: str) -> None:
    with pytest.raises(SettingsError, match="set --agent-token"):
        ControlPlaneSettings(management_addr=address).require_agent_token_off_loopback()
    ControlPlaneSettings(
        management_addr=address, agent_token="t"
    ).require_agent_token_off_loopback()


@pytest.mark.parametrize(
    "address", ["127.0.0.1:8060", "127.0.0.9:8060", "[::1]:8060", "localhost:8060"]
)
def test_loopback_may_run_without_an_agent_token(address: str) -> None:
    ControlPlaneSettings(management_addr=address).require_agent_token_off_loopback()
