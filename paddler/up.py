"""``paddler up``: a control plane and one local agent, ready to use in one command."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
from dataclasses import replace
from pathlib import Path

from control_plane.server import run_control_plane
from control_plane.settings import ControlPlaneSettings
from control_plane.state import ControlPlane
from paddler.models import bundled_model_path

logger = logging.getLogger("paddler.up")

AGENT_READY_TIMEOUT_SECONDS = 120.0


async def run_up(
    settings: ControlPlaneSettings, stop: asyncio.Event, model: str | None, slots: int
) -> None:
    model_path = Path(model) if model else bundled_model_path()
    if not settings.agent_token:
        settings = replace(settings, agent_token=secrets.token_urlsafe(24))
    state = ControlPlane(settings)
    agent: asyncio.subprocess.Process | None = None
    background: set[asyncio.Task[None]] = set()

    async def start_agent() -> None:
        nonlocal agent
        agent = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "paddler",
            "agent",
            "--control-plane",
            f"http://{settings.management_addr}",
            "--model",
            str(model_path),
            "--slots",
            str(slots),
            "--name",
            "local-1",
            "--log-level",
            settings.log_level,
            env={**os.environ, "PADDLER_TOKEN": settings.agent_token},
        )
        announcer = asyncio.create_task(_announce_when_ready(state, model_path.stem, agent, stop))
        background.add(announcer)

    try:
        await run_control_plane(state, stop, on_ready=start_agent)
    finally:
        if agent is not None and agent.returncode is None:
            agent.terminate()
            await agent.wait()


async def _announce_when_ready(
    state: ControlPlane, pool: str, agent: asyncio.subprocess.Process, stop: asyncio.Event
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + AGENT_READY_TIMEOUT_SECONDS
    while state.ready_agents(pool) == 0:
        if agent.returncode is not None:
            logger.error("the local agent exited with code %s; stopping", agent.returncode)
            stop.set()
            return
        if loop.time() > deadline:
            logger.error("the local agent did not become ready within %.0fs", deadline)
            stop.set()
            return
        await asyncio.sleep(0.2)
    base_url = f"http://{state.settings.inference_addr}/v1"
    auth = "\n    -H 'Authorization: Bearer YOUR_KEY' \\" if state.api_keys.required else ""
    print(
        f"""
Paddler is serving {pool!r}.

  OpenAI base URL:  {base_url}
  Management API:   http://{state.settings.management_addr}/api/v1/pools

  curl {base_url}/chat/completions -H 'Content-Type: application/json' \\{auth}
    -d '{{"model": "{pool}", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

Press Ctrl-C to stop.
""",
        flush=True,
    )
