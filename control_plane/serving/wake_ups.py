"""One timer for many waiting jobs: their ``Waiting`` reports and buffer deadlines.

Thousands of jobs may wait in the buffer, each due to hear from its follower every few
seconds. Rather than a timer each, a job asks to be woken at a moment; the moments are rounded
up to ``resolution`` and all the jobs due at one moment share one timer, which puts a ``Tick``
in each one's events. A tick is a hint, never an outcome: its follower looks at the clock.
A wake-up may instead call a function of the job's (its reports, written without waking the
follower: see relay.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from control_plane.serving.jobs import InferenceJob, Tick

logger = logging.getLogger("paddler.scheduler")

TICK = Tick()


class WakeUps:
    def __init__(self, resolution: float = 0.05) -> None:
        self.resolution = resolution
        self._due: dict[int, list[tuple[InferenceJob, Callable[[], None] | None]]] = {}

    def wake(self, job: InferenceJob, at: float, then: Callable[[], None] | None = None) -> None:
        """At ``at`` (``time.monotonic()``), or a little later (at most ``resolution``): put a
        ``Tick`` in ``job``'s events if it still waits, or call ``then`` (whatever the job
        does by then)."""
        moment = math.ceil(at / self.resolution)
        due = self._due.get(moment)
        if due is None:
            due = self._due[moment] = []
            loop = asyncio.get_running_loop()  # its clock may not be time.monotonic()'s
            delay = moment * self.resolution - time.monotonic()
            loop.call_at(loop.time() + delay, self._fire, moment)
        due.append((job, then))

    def __len__(self) -> int:
        """Wake-ups still to come."""
        return sum(len(due) for due in self._due.values())

    def _fire(self, moment: int) -> None:
        for job, then in self._due.pop(moment, ()):
            if then is not None:
                try:
                    then()
                except Exception:  # the other jobs due now must still hear of it
                    logger.exception("the wake-up of job %s failed", job.id, extra=job.log_extra)
            elif job.waiting:  # else nobody needs it: its follower is gone or not waiting
                job.events.put_nowait(TICK)
