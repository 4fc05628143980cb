"""The agent websocket served on ASGI in front of the management app (agent_socket.py,
asgi_websocket.py), through real Uvicorn and real websockets in this process: what it does
when the connection's own work fails, why an agent left, and that every other websocket path
is still the app's."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
from collections.abc import AsyncIterator

import pytest
from quart import Quart
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from control_plane.server import listen, serve_app
from control_plane.state import ControlPlane
from paddler import protocol

HELLO = protocol.Hello(
    agent_id="a1", name="first", version="0", slots=1, model="m", model_source="/m.gguf", pool="m"
)


@pytest.fixture
async def address(app: Quart, plane: ControlPlane) -> AsyncIterator[str]:
    """``ws://host:port`` of the management app served by Uvicorn on a free port."""
    descriptor = listen("127.0.0.1:0")
    probe = socket.socket(fileno=os.dup(descriptor))
    port = probe.getsockname()[1]
    probe.close()
    shutdown = asyncio.Event()
    server = asyncio.create_task(serve_app(app, descriptor, 1 << 20, shutdown))
    yield f"ws://127.0.0.1:{port}"
    plane.closing.set()  # agents' readers end, as at a control plane's shutdown
    shutdown.set()
    await server


async def _until(condition: object, what: str) -> None:
    assert callable(condition)
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_failure_while_an_agent_joins_closes_its_socket_with_1011_and_logs_it(
    address: str,
    plane: ControlPlane,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken_ensure_pool(*_: object) -> None:  # stands for a database that is down
        raise RuntimeError("database unreachable")

    url = address + protocol.AGENT_SOCKET_PATH
    with monkeypatch.context() as patched:
        patched.setattr(plane, "ensure_pool", broken_ensure_pool)
        async with connect(url) as socket:
            await socket.send(protocol.encode(HELLO))
            with pytest.raises(ConnectionClosedError) as closed:
                await socket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    assert plane.fleet.get("a1") is None
    assert any("database unreachable" in (r.exc_text or "") for r in caplog.records)

    async with connect(url) as socket:  # the next agent joins as usual
        await socket.send(protocol.encode(HELLO))
        welcome = protocol.decode_control_plane_message(await socket.recv())
        assert isinstance(welcome, protocol.Welcome)
        await _until(lambda: plane.fleet.get("a1") is not None, "the agent to join")


async def test_an_agent_that_leaves_is_let_go_with_its_close_code_as_the_reason(
    address: str, plane: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="paddler.agents")
    async with connect(address + protocol.AGENT_SOCKET_PATH) as socket:
        await socket.send(protocol.encode(HELLO))
        await socket.recv()  # the welcome
        await _until(lambda: plane.fleet.get("a1") is not None, "the agent to join")
        await socket.close(4000, "bye")
    await _until(lambda: plane.fleet.get("a1") is None, "the agent to be let go")
    left = [r.getMessage() for r in caplog.records if "left pool m" in r.getMessage()]
    assert left == ["agent first left pool m: connection closed (4000)"]


async def test_a_wrong_agent_token_is_an_http_401_before_the_handshake(
    address: str, plane: ControlPlane
) -> None:
    plane.settings = dataclasses.replace(plane.settings, agent_token="right")
    headers = {"Authorization": "Bearer wrong"}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(address + protocol.AGENT_SOCKET_PATH, additional_headers=headers):
            pass
    assert refused.value.response.status_code == 401
    assert refused.value.response.body == b"invalid agent token"


async def test_other_websocket_paths_still_reach_the_app(address: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(address + "/not-the-agent-socket"):
            pass
    assert refused.value.response.status_code == 404  # Quart's answer: no such route
