"""Signals that stop a benchmark without leaving its servers running."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType


class Interruption:
    """Ctrl-C, SIGTERM and SIGHUP unwind the benchmark (``finally`` blocks stop the servers).

    SIGINT raises KeyboardInterrupt at once, even inside ``asyncio.run`` (whose own handler
    would only cancel the running task, and lose the interrupt if the task failed first, as it
    does when the servers, in the same process group, die of the same Ctrl-C).
    """

    def __init__(self) -> None:
        self.signal: int | None = None

    def _raise(self, signum: int, _: FrameType | None) -> None:
        self.signal = signum
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def check(self) -> None:
        """Raise again if a signal came but its exception was swallowed on the way."""
        if self.signal == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signal is not None:
            raise SystemExit(128 + self.signal)

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interruption]:
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {sig: signal.signal(sig, self._raise) for sig in signals}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
