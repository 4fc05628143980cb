"""Carrying the decoder thread's callbacks over to the event loop that awaits the results."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

from agent.engine.sequence import Outcome

__all__ = ["Mailbox", "settle"]

logger = logging.getLogger("paddler.agent.engine")

_Callbacks = list[tuple[Callable[..., None], tuple[object, ...]]]


class Mailbox:
    """Carries the decoder thread's callbacks to one event loop: one wake-up per step."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: _Callbacks = []

    def post(self, callback: Callable[..., None], *args: object) -> None:
        with self._lock:
            self._pending.append((callback, args))

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if pending:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                self._loop.call_soon_threadsafe(_run_all, pending)


def settle(future: asyncio.Future[Outcome], outcome: Outcome | BaseException) -> None:
    """Resolve ``future`` with a sequence's outcome, or the exception that ended it."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _run_all(callbacks: _Callbacks) -> None:
    for callback, args in callbacks:
        try:
            callback(*args)
        except Exception:  # one failing callback must not keep the others' results back
            logger.exception("a generation callback failed")
