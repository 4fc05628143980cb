"""An agent connection's state changes, written to the database off its read loop."""

from __future__ import annotations

import asyncio
import logging

from control_plane.db.store import Store
from paddler.protocol import AgentState

logger = logging.getLogger("paddler.agents")


class AgentRecorder:
    """Records one agent's state changes in order, on a task of its own.

    The read loop only queues a change: a slow or locked database delays the record, never
    the agent's tokens, and a database error is logged rather than dropping the agent. Changes
    that queue up while a write is slow collapse into the newest.
    """

    def __init__(self, store: Store, agent_id: str, name: str) -> None:
        self._store = store
        self._agent_id = agent_id
        self._name = name
        self._changes: asyncio.Queue[AgentState] = asyncio.Queue()

    def state_changed(self, state: AgentState) -> None:
        self._changes.put_nowait(state)

    async def written(self) -> None:
        """Wait until every queued change has been written (or has failed)."""
        await self._changes.join()

    async def run(self) -> None:
        while True:
            state = await self._changes.get()
            skipped = 0
            while not self._changes.empty():
                state = self._changes.get_nowait()
                skipped += 1
            try:
                await self._store.agent_state_changed(self._agent_id, state)
            except Exception:
                logger.exception(
                    "could not record that agent %s is %s; it keeps serving", self._name, state
                )
            finally:
                for _ in range(skipped + 1):
                    self._changes.task_done()
