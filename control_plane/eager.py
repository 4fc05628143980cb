"""Run a coroutine at once, in the caller's stack, and give it a task only if it must wait.

Python 3.12 has eager tasks; on 3.11 a timer callback that wants to send a few bytes (an ASGI
``send`` that writes to a transport and returns) would otherwise pay for a task, its first
step through the event loop, and its wake-up. ``start_now`` steps the coroutine itself: most
such coroutines finish in that first step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def start_now(coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run ``coroutine`` up to its first wait; ``None`` if it finished there, else the task
    that finishes it. An exception it raises before waiting is raised here. The task is not
    meant to be cancelled: a cancellation ends it and closes the coroutine where it waits."""
    try:
        waited = coroutine.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_finish(coroutine, waited))


async def _finish(coroutine: Coroutine[Any, Any, None], waited: object) -> None:
    """Drive ``coroutine`` as a task would from where it stands: ``waited`` is what it yielded,
    a future to wait for or ``None`` (it gives the loop a turn)."""
    try:
        while True:
            if isinstance(waited, asyncio.Future):
                # the coroutine's own ``await`` reads the outcome when it resumes
                waited._asyncio_future_blocking = False
                await asyncio.wait((waited,))
            elif waited is None:
                await asyncio.sleep(0)
            else:
                raise RuntimeError(f"a coroutine run by start_now yielded {waited!r}")
            try:
                waited = coroutine.send(None)
            except StopIteration:
                return
    finally:
        coroutine.close()  # a no-op once it returned; else it is told to stop where it waits
