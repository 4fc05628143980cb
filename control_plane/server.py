"""Run a control plane: both addresses under Hypercorn in one process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from hypercorn.asyncio import serve
from hypercorn.config import Config

from control_plane.app import create_inference_app, create_management_app
from control_plane.state import ControlPlane

logger = logging.getLogger("paddler.control_plane")


def _hypercorn_config(bind: str) -> Config:
    config = Config()
    config.bind = [bind]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 3.0
    config.keep_alive_timeout = 75.0
    config.websocket_ping_interval = None
    return config


async def run_control_plane(
    state: ControlPlane,
    shutdown: asyncio.Event,
    on_ready: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve until ``shutdown`` is set; ``on_ready`` runs once both addresses listen."""
    await state.start()
    settings = state.settings
    inference = create_inference_app(state)
    management = create_management_app(state)
    servers = [
        asyncio.create_task(
            serve(
                inference,
                _hypercorn_config(settings.inference_addr),
                shutdown_trigger=shutdown.wait,
            ),
            name="inference-server",
        ),
        asyncio.create_task(
            serve(
                management,
                _hypercorn_config(settings.management_addr),
                shutdown_trigger=shutdown.wait,
            ),
            name="management-server",
        ),
    ]

    async def close_agent_sockets() -> None:
        await shutdown.wait()
        state.closing.set()

    closer = asyncio.create_task(close_agent_sockets())
    try:
        logger.info(
            "control plane listening: inference http://%s  management http://%s",
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
