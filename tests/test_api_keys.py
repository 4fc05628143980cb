"""Client API keys on the inference API, on the real app with real SQL state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart import Quart

from control_plane.app import create_inference_app
from control_plane.settings import ControlPlaneSettings
from control_plane.state import ControlPlane
from control_plane.tenancy import ANONYMOUS, KeyDirectory


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Quart]:
    state = ControlPlane(ControlPlaneSettings(state_dir=tmp_path, api_keys="first, second"))
    await state.start()
    yield create_inference_app(state)
    await state.stop()


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer wrong", "Basic first", "first"]
)
async def test_requests_without_a_valid_key_get_401(app: Quart, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = await app.test_client().get("/v1/models", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await response.get_json())["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("key", ["first", "second"])
async def test_each_configured_key_is_accepted(app: Quart, key: str) -> None:
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    assert (await client.get("/v1/models", headers=headers)).status_code == 200
    unknown_model = await client.post(
        "/v1/chat/completions",
        headers=headers,
        json={"model": "nope", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert unknown_model.status_code == 404


async def test_health_needs_no_key(app: Quart) -> None:
    assert (await app.test_client().get("/health")).status_code == 200


def test_no_keys_means_open() -> None:
    assert KeyDirectory("", None).authenticate("") is ANONYMOUS
    assert KeyDirectory(" , ", None).open
