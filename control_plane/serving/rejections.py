"""Requests turned away because a pool's buffer is full, and their log lines.

Under overload every request may be rejected: one WARNING each would bury the log (thousands a
minute), so each pool logs its first rejection, then at most one line per ``interval`` saying
how many were rejected since the last line. The scheduler's counters still count every one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger("paddler.scheduler")

SUMMARY_INTERVAL_SECONDS = 5.0


class BufferFull(Exception):
    def __init__(self, pool: str, size: int) -> None:
        super().__init__(f"the request buffer of model {pool!r} is full ({size} waiting)")
        self.pool = pool
        self.size = size


class RejectionLog:
    def __init__(
        self,
        interval: float = SUMMARY_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._unlogged: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}

    def rejected(self, pool: str, waiting: int) -> None:
        self._unlogged[pool] = self._unlogged.get(pool, 0) + 1
        self._log_due(pool, f"its buffer is full ({waiting} waiting)")

    def accepted(self, pool: str) -> None:
        """A job of ``pool`` got in: say how many were turned away before it, if it is time."""
        if self._unlogged.get(pool):
            self._log_due(pool, "its buffer has room again")

    def _log_due(self, pool: str, why: str) -> None:
        now = self.clock()
        last = self._logged_at.get(pool)
        if last is not None and now - last < self.interval:
            return
        count = self._unlogged.pop(pool, 0)
        self._logged_at[pool] = now
        since = "" if last is None else f" in the last {now - last:.0f}s"
        logger.warning(
            "rejected %d request%s for %s%s: %s (rejections are logged at most every %.0fs)",
            count,
            "" if count == 1 else "s",
            pool,
            since,
            why,
            self.interval,
        )
