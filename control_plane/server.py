"""Run a control plane: both addresses under Uvicorn in one process.

Uvicorn parses HTTP with httptools (C) and speaks websockets through the ``websockets``
package's sans-I/O protocol; on Hypercorn's pure-Python h11 and wsproto the same control plane
served 1.6-2.4x fewer requests per second (README, "The control plane's hot paths")."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from quart import Quart

from control_plane import garbage_collection
from control_plane.addresses import split_address
from control_plane.app import create_inference_app, create_management_app
from control_plane.http_protocol import HttpProtocol
from control_plane.state import ControlPlane

logger = logging.getLogger("paddler.control_plane")


def listen(address: str) -> int:
    """Bind ``host:port`` now, so a busy port fails early with a message that names it.

    Returns the listening socket's file descriptor, which the server takes over.
    """
    host, port = split_address(address)
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise OSError(f"expected host:port, got {address!r}")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
        sock.listen(1024)
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {address}: {error.strerror or error}") from error
    return sock.detach()


class _Server(uvicorn.Server):
    """Uvicorn without its signal handlers: the CLI owns signals and sets ``shutdown``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn_config(app: Quart, max_message_bytes: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        http=HttpProtocol,  # httptools, with connections reset by clients let go at once
        ws="websockets-sansio",
        loop="none",  # the running loop (uvloop when installed, see paddler.event_loop)
        lifespan="off",  # the control plane starts and stops its state itself
        log_config=None,  # paddler.logs configured logging; uvicorn's own lines are noise
        log_level="warning",
        access_log=False,  # one INFO line per request is the control plane's own
        proxy_headers=False,  # X-Forwarded-* are read where trusted (forwarded_proto.py)
        server_header=False,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=3,
        ws_ping_interval=None,  # agents and the control plane keep their own deadlines
        # the agent socket's frames: agents split larger results to stay under it
        ws_max_size=max_message_bytes,
        # only negotiated when an agent asks for it (AgentRunner(compression=True))
        ws_per_message_deflate=True,
    )


async def serve_app(
    app: Quart, descriptor: int, max_message_bytes: int, shutdown: asyncio.Event
) -> None:
    """Serve ``app`` on the listening socket ``descriptor`` until ``shutdown`` is set."""
    server = _Server(_uvicorn_config(app, max_message_bytes))

    async def stop_on_shutdown() -> None:
        await shutdown.wait()
        server.should_exit = True

    stopper = asyncio.create_task(stop_on_shutdown())
    try:
        await server.serve(sockets=[socket.socket(fileno=descriptor)])
    finally:
        stopper.cancel()


async def run_control_plane(
    state: ControlPlane,
    shutdown: asyncio.Event,
    on_ready: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve until ``shutdown`` is set; ``on_ready`` runs once both addresses listen."""
    settings = state.settings
    inference_socket = listen(settings.inference_addr)
    management_socket = listen(settings.management_addr)
    await state.start()
    inference = create_inference_app(state)
    management = create_management_app(state)
    garbage_collection.settle_after_startup()
    servers = [
        asyncio.create_task(
            serve_app(inference, inference_socket, settings.agent_max_frame_bytes, shutdown),
            name="inference-server",
        ),
        asyncio.create_task(
            serve_app(management, management_socket, settings.agent_max_frame_bytes, shutdown),
            name="management-server",
        ),
    ]

    async def close_agent_sockets() -> None:
        await shutdown.wait()
        state.fleet.hold_all("shutdown")
        state.closing.set()

    closer = asyncio.create_task(close_agent_sockets())
    try:
        logger.info(
            "listening: inference API http://%s  management http://%s",
            settings.inference_addr,
            settings.management_addr,
        )
        if on_ready is not None:
            await on_ready()
        done, _ = await asyncio.wait(servers, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
        shutdown.set()
        await asyncio.gather(*servers, return_exceptions=True)
    finally:
        closer.cancel()
        for task in servers:
            task.cancel()
        await state.stop()
