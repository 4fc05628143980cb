"""The control plane's HTTP protocol (control_plane/http_protocol.py) through real Uvicorn in
this process: a connection its client resets is let go at once, not held by its keep-alive
timer, and keep-alive itself still works."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct
from collections.abc import AsyncIterator

import pytest
from quart import Quart

from control_plane.http_protocol import HttpProtocol
from control_plane.server import listen, serve_app

REQUEST = b"GET /ping HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture
async def port() -> AsyncIterator[int]:
    """The port of a small app served by Uvicorn with the control plane's protocol."""
    app = Quart(__name__)

    @app.get("/ping")
    async def ping() -> str:
        return "pong"

    descriptor = listen("127.0.0.1:0")
    probe = socket.socket(fileno=os.dup(descriptor))
    number: int = probe.getsockname()[1]
    probe.close()
    shutdown = asyncio.Event()
    server = asyncio.create_task(serve_app(app, descriptor, 1 << 20, shutdown))
    yield number
    shutdown.set()
    await server


def live_connections() -> int:
    gc.collect()
    return sum(isinstance(each, HttpProtocol) for each in gc.get_objects())


async def answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return await reader.readexactly(length)


async def until_none_left() -> None:
    for _ in range(100):
        if live_connections() == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{live_connections()} connections still held")


async def test_connections_reset_by_their_clients_are_let_go_at_once(port: int) -> None:
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await answered(reader, writer) == b"pong"
        assert await answered(reader, writer) == b"pong"  # kept alive for the next request
        raw = writer.get_extra_info("socket")
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()  # with a zero linger: a reset, not a clean close
    await until_none_left()  # Uvicorn's own protocol held each for timeout_keep_alive (75 s)


async def test_connections_closed_cleanly_are_let_go_too(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await answered(reader, writer) == b"pong"
    writer.close()
    await writer.wait_closed()
    await until_none_left()
