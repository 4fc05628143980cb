"""The agent websocket served on ASGI in front of the management app (agent_socket.py,
asgi_websocket.py): what it does when the connection's own work fails, and that the rest of
the management app is still Quart's."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from quart import Quart
from quart.testing import WebsocketResponseError
from quart.testing.connections import WebsocketDisconnectError

from control_plane.state import ControlPlane
from paddler import protocol

HELLO = protocol.Hello(
    agent_id="a1", name="first", version="0", slots=1, model="m", model_source="/m.gguf", pool="m"
)


async def _joined(plane: ControlPlane, agent_id: str) -> bool:
    for _ in range(100):
        if plane.fleet.get(agent_id) is not None:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_a_failure_while_an_agent_joins_closes_its_socket_with_1011_and_logs_it(
    app: Quart,
    plane: ControlPlane,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken_ensure_pool(*_: object) -> None:  # stands for a database that is down
        raise RuntimeError("database unreachable")

    with monkeypatch.context() as patched:
        patched.setattr(plane, "ensure_pool", broken_ensure_pool)
        async with app.test_client().websocket(protocol.AGENT_SOCKET_PATH) as socket:
            await socket.send(protocol.encode(HELLO))
            with pytest.raises(WebsocketDisconnectError) as closed:
                await socket.receive()
    assert closed.value.args[0] == 1011
    assert plane.fleet.get("a1") is None
    assert any("database unreachable" in (r.exc_text or "") for r in caplog.records)

    # the next agent joins as usual
    async with app.test_client().websocket(protocol.AGENT_SOCKET_PATH) as socket:
        await socket.send(protocol.encode(HELLO))
        welcome = protocol.decode_control_plane_message(await socket.receive())
        assert isinstance(welcome, protocol.Welcome)
        assert await _joined(plane, "a1")


async def test_an_agent_that_leaves_is_let_go_with_the_close_code_as_its_reason(
    app: Quart, plane: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="paddler.agents")
    async with app.test_client().websocket(protocol.AGENT_SOCKET_PATH) as socket:
        await socket.send(protocol.encode(HELLO))
        await socket.receive()  # the welcome
        assert await _joined(plane, "a1")
        await socket.close(4000)  # the test client's message: the agent closed
    for _ in range(100):
        if plane.fleet.get("a1") is None:
            break
        await asyncio.sleep(0.02)
    assert plane.fleet.get("a1") is None
    assert any("left pool m: connection closed" in r.getMessage() for r in caplog.records)


async def test_a_wrong_agent_token_is_an_http_401_before_the_handshake(
    plane: ControlPlane, app: Quart
) -> None:
    plane.settings = dataclasses.replace(plane.settings, agent_token="right")
    headers = {"Authorization": "Bearer wrong"}
    with pytest.raises(WebsocketResponseError) as refused:
        async with app.test_client().websocket(protocol.AGENT_SOCKET_PATH, headers=headers) as s:
            await s.receive()
    assert refused.value.response.status_code == 401


async def test_other_websocket_paths_still_reach_the_app(app: Quart) -> None:
    with pytest.raises(WebsocketResponseError) as refused:
        async with app.test_client().websocket("/not-the-agent-socket") as socket:
            await socket.receive()
    assert refused.value.response.status_code == 404
