"""Requests turned away because they would have to wait and there is no room: their pool's
buffer (of their kind) is full, or their API key already has its most requests waiting (in
all pools: one key's burst is turned away while the other keys' requests still get in).

Under overload every request may be rejected: one WARNING each would bury the log (thousands a
minute), so each pool (and each key) logs its first rejection, then at most one line per
``interval`` saying how many were rejected since the last line. The scheduler's counters still
count every one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from control_plane.serving.buffer import Buffer
from control_plane.serving.jobs import InferenceJob

logger = logging.getLogger("paddler.scheduler")

SUMMARY_INTERVAL_SECONDS = 5.0


class BufferFull(Exception):
    counter = "rejected_buffer_full"  # in the scheduler's counters

    def __init__(self, pool: str, size: int) -> None:
        super().__init__(f"the request buffer of model {pool!r} is full ({size} waiting)")
        self.pool = pool
        self.size = size

    @property
    def subject(self) -> str:
        """Who is out of room, for the log."""
        return self.pool

    @property
    def reason(self) -> str:
        return f"its buffer is full ({self.size} waiting)"


class KeyBufferFull(BufferFull):
    """The API key already has its most requests waiting (``size``, in all pools)."""

    counter = "rejected_key_buffer_full"

    def __init__(self, key: str, size: int, *, pool: str) -> None:
        super().__init__(pool, size)
        self.args = (f"API key {key!r} already has {size} requests waiting, its most",)
        self.key = key

    @property
    def subject(self) -> str:
        return _key_subject(self.key)

    @property
    def reason(self) -> str:
        return f"it already has {self.size} requests waiting, its most"


def refusal(buffer: Buffer, job: InferenceJob, max_buffered: int) -> BufferFull | None:
    """Why ``job``, which would have to wait, may not (None: it may wait)."""
    waiting = buffer.count_like(job)
    if waiting >= max_buffered:
        return BufferFull(job.pool, waiting)
    most = job.sender.max_buffered
    if most is not None and (mine := buffer.count_of_key(job.sender.key)) >= most:
        return KeyBufferFull(job.sender.key, mine, pool=job.pool)
    return None


def _key_subject(key: str) -> str:
    return f"key {key!r}"


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
        self.refused(BufferFull(pool, waiting))

    def refused(self, full: BufferFull) -> None:
        self._unlogged[full.subject] = self._unlogged.get(full.subject, 0) + 1
        self._log_due(full.subject, full.reason)

    def accepted(self, pool: str, key: str = "") -> None:
        """A job of ``pool`` sent with ``key`` got in: say how many were turned away before it
        (for the pool, and for the key), if it is time."""
        for subject in (pool, _key_subject(key)):
            if self._unlogged.get(subject):
                self._log_due(subject, "its buffer has room again")

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
