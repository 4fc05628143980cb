"""Run a control plane: both addresses under Hypercorn in one process."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

from hypercorn.asyncio import serve
from hypercorn.config import Config

from control_plane.addresses import split_address
from control_plane.app import create_inference_app, create_management_app
from control_plane.state import ControlPlane

logger = logging.getLogger("paddler.control_plane")


def listen(address: str) -> int:
    """Bind ``host:port`` now, so a busy port fails early with a message that names it.

    Returns the listening socket's file descriptor, which Hypercorn takes over.
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


def _hypercorn_config(descriptor: int, max_message_bytes: int) -> Config:
    config = Config()
    config.bind = [f"fd://{descriptor}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 3.0
    config.keep_alive_timeout = 75.0
    config.websocket_ping_interval = None
    # the agent socket's frames: agents split larger results to stay under it
    config.websocket_max_message_size = max_message_bytes
    return config


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
    servers = [
        asyncio.create_task(
            serve(
                inference,
                _hypercorn_config(inference_socket, settings.agent_max_frame_bytes),
                shutdown_trigger=shutdown.wait,
            ),
            name="inference-server",
        ),
        asyncio.create_task(
            serve(
                management,
                _hypercorn_config(management_socket, settings.agent_max_frame_bytes),
                shutdown_trigger=shutdown.wait,
            ),
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
