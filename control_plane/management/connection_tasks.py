"""The tasks that share one agent connection, supervised together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger("paddler.agents")

Close = Callable[[int, str], Awaitable[None]]


async def supervise(
    name: str, reader: asyncio.Task[str], *others: asyncio.Task[Any], close: Close
) -> str:
    """Wait until one task ends; why the connection ends.

    ``reader`` ending returns its reason. Any other task ending (they run forever), or the
    reader failing, is a fault: it is logged and the connection closed with 1011, so the
    agent is never left connected with nobody reading or writing.
    """
    tasks = [reader, *others]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    ended = next(task for task in tasks if task in done)
    error = ended.exception()
    if ended is reader and error is None:
        return reader.result()
    logger.error(
        "the %s of agent %s's connection stopped; closing the connection",
        ended.get_name(),
        name,
        exc_info=error,
    )
    with contextlib.suppress(Exception):  # the socket may be broken already: closing is a courtesy
        await close(1011, f"control plane {ended.get_name()} failed")
    return f"its {ended.get_name()} failed: {error!r}"
