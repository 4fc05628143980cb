"""An in-process control plane and its real inference app, for tests that drive requests through
the app while in-memory agent links (``AgentLink`` whose outbox nobody writes to a socket) stand
for connected agents. Registered as a pytest plugin in conftest.py (``inference_plane``)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from quart import Quart

from control_plane.app import create_inference_app
from control_plane.serving.fleet import AgentLink
from control_plane.settings import ControlPlaneSettings
from control_plane.state import ControlPlane
from paddler import protocol
from tests.test_scheduler import make_agent


@pytest.fixture
async def inference_plane(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    """A started control plane with one pool, ``m``, and no agent."""
    state = ControlPlane(ControlPlaneSettings(state_dir=tmp_path))
    await state.start()
    await state.ensure_pool("m", "fake://m", 1)
    yield state
    state.closing.set()
    await state.stop()


async def job_sent_to(agent: AgentLink) -> str:
    while not isinstance(message := await agent.outbox.get(), protocol.Job):
        pass
    return message.job_id


CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


@contextlib.asynccontextmanager
async def chat_stream(plane: ControlPlane) -> AsyncIterator[tuple[AgentLink, Any, str]]:
    """A streamed chat completion through the real app, sent to an agent of its own: the
    agent, the client's connection and the job's id."""
    agent = make_agent("a")
    plane.scheduler.agent_joined(agent)
    app: Quart = create_inference_app(plane)
    async with app.test_client().request("/v1/chat/completions", method="POST") as connection:
        await connection.send(json.dumps(CHAT).encode())
        await connection.send_complete()
        yield agent, connection, await job_sent_to(agent)
