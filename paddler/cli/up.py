"""``paddler up``: a control plane and one local agent, ready to use in one command.

The agent is started by the autoscaler's ``local`` provider with ``min_agents = 1``: it is a
child process that is replaced if it crashes, and stopped when ``paddler up`` stops. Its agent
token is kept in the state directory, so a ``paddler up`` restarted after being killed adopts
the agent it left running instead of refusing it and starting another.

The banner shows the admin token only on a terminal: stdout sent to a file or a pipe is a log,
and logs are not where secrets go.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from control_plane.autoscaler.setup import agent_pool
from control_plane.management.admin_token import (
    admin_token_path,
    ensure_admin_token,
    ensure_agent_token,
)
from control_plane.server import run_control_plane
from control_plane.settings import ControlPlaneSettings
from control_plane.state import ControlPlane
from paddler.bundled import bundled_model_path

logger = logging.getLogger("paddler.up")

AGENT_READY_TIMEOUT_SECONDS = 120.0


def up_settings(
    settings: ControlPlaneSettings, model: str | None, slots: int
) -> ControlPlaneSettings:
    """The settings of ``paddler up``: the local provider keeping at least one agent, serving
    any model name (unless ``--model-aliases`` says otherwise)."""
    agent_model = model or settings.agent_model or str(bundled_model_path())
    min_agents = max(1, settings.min_agents)
    agent_args = shlex.join(["--log-level", settings.log_level]) + " " + settings.agent_args
    upped = replace(
        settings,
        agent_token=ensure_agent_token(settings),
        provider="local",
        min_agents=min_agents,
        max_agents=max(min_agents, settings.max_agents),
        agent_model=str(Path(agent_model).resolve()) if "://" not in agent_model else agent_model,
        agent_slots=slots,
        agent_args=agent_args.strip(),
    )
    # one pool: clients written for OpenAI (model="gpt-5.5") work unchanged
    return replace(upped, model_aliases=settings.model_aliases or f"*={agent_pool(upped)}")


async def run_up(
    settings: ControlPlaneSettings, stop: asyncio.Event, model: str | None, slots: int
) -> None:
    settings = up_settings(settings, model, slots)
    admin_token_kept = not settings.admin_token
    settings = replace(settings, admin_token=ensure_admin_token(settings))
    state = ControlPlane(settings)
    state.autoscaling.terminate_on_exit = True
    background: set[asyncio.Task[None]] = set()

    async def announce() -> None:
        announcer = asyncio.create_task(_announce_when_ready(state, stop, admin_token_kept))
        background.add(announcer)

    await run_control_plane(state, stop, on_ready=announce)


async def _announce_when_ready(
    state: ControlPlane, stop: asyncio.Event, admin_token_kept: bool
) -> None:
    autoscaler = state.autoscaling.pool
    assert autoscaler is not None, "paddler up runs the local provider"
    pool = autoscaler.pool
    loop = asyncio.get_running_loop()
    deadline = loop.time() + AGENT_READY_TIMEOUT_SECONDS
    while state.fleet.load(pool).agents_ready == 0:
        if autoscaler.failing:
            logger.error(
                "the local agent failed to start; see its log in %s", state.settings.state_dir
            )
            stop.set()
            return
        if loop.time() > deadline:
            logger.error(
                "the local agent did not become ready within %.0fs", AGENT_READY_TIMEOUT_SECONDS
            )
            stop.set()
            return
        await asyncio.sleep(0.2)
    base_url = f"http://{state.settings.inference_addr}/v1"
    keyless = state.tenancy.directory.open
    auth = "" if keyless else "\n    -H 'Authorization: Bearer YOUR_KEY' \\"
    management = f"http://{state.settings.management_addr}"
    print(
        f"""
Paddler is serving {pool!r}.

  OpenAI base URL:  {base_url}
  Dashboard:        {management}/
  Admin token:      {_shown_admin_token(state.settings, admin_token_kept, sys.stdout.isatty())}
  Management API:   {management}/api/v1/pools  (Authorization: Bearer <admin token>)

  curl {base_url}/chat/completions -H 'Content-Type: application/json' \\{auth}
    -d '{{"model": "{pool}", "messages": [{{"role": "user", "content": "Hello!"}}]}}'

Press Ctrl-C to stop.
""",
        flush=True,
    )


def _shown_admin_token(settings: ControlPlaneSettings, kept: bool, terminal: bool) -> str:
    """The token itself for a person at a terminal; where to find it for anything else."""
    source = f"kept in {admin_token_path(settings)}" if kept else "from your settings"
    return f"{settings.admin_token}  ({source})" if terminal else source
