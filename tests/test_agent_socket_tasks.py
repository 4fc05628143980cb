"""An agent connection that ends leaves no task of it pending: a task left waiting on the closed
socket is destroyed later by the garbage collector ("Task was destroyed but it is pending")."""

from __future__ import annotations

import asyncio

from quart import Quart

from control_plane.state import ControlPlane
from paddler import protocol

HELLO = protocol.Hello(
    agent_id="a1", name="gone", version="0", slots=1, model="m", model_source="/m.gguf", pool="m"
)


def _pending_receives() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and "receive" in getattr(task.get_coro(), "__qualname__", "")
    ]


async def test_a_lost_agent_leaves_no_pending_task(app: Quart, plane: ControlPlane) -> None:
    before = len(_pending_receives())
    async with app.test_client().websocket(protocol.AGENT_SOCKET_PATH) as socket:
        await socket.send(protocol.encode(HELLO))
        await socket.receive()  # the welcome
        for _ in range(100):
            if plane.fleet.get("a1") is not None:
                break
            await asyncio.sleep(0.02)
        assert plane.fleet.get("a1") is not None
    for _ in range(100):  # the connection's handler lets go of the agent
        if plane.fleet.get("a1") is None:
            break
        await asyncio.sleep(0.02)
    assert plane.fleet.get("a1") is None
    await asyncio.sleep(0.1)
    assert len(_pending_receives()) == before, _pending_receives()
