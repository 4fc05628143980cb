"""One timer for many waiting jobs: their ``Waiting`` reports and buffer deadlines.

Thousands of jobs may wait in the buffer, each due to hear from its follower every few
seconds. Rather than a timer each, a job asks to be woken at a moment; the moments are rounded
up to ``resolution`` and all the jobs due at one moment share one timer, which puts a ``Tick``
in each one's events. A tick is a hint, never an outcome: its follower looks at the clock.
"""

from __future__ import annotations

import asyncio
import math
import time

from control_plane.serving.jobs import InferenceJob, Tick

TICK = Tick()


class WakeUps:
    def __init__(self, resolution: float = 0.05) -> None:
        self.resolution = resolution
        self._due: dict[int, list[InferenceJob]] = {}

    def wake(self, job: InferenceJob, at: float) -> None:
        """Put a ``Tick`` in ``job``'s events at ``at`` (``time.monotonic()``), or a little
        later: at most ``resolution``."""
        moment = math.ceil(at / self.resolution)
        jobs = self._due.get(moment)
        if jobs is None:
            jobs = self._due[moment] = []
            loop = asyncio.get_running_loop()  # its clock may not be time.monotonic()'s
            delay = moment * self.resolution - time.monotonic()
            loop.call_at(loop.time() + delay, self._fire, moment)
        jobs.append(job)

    def __len__(self) -> int:
        """Wake-ups still to come."""
        return sum(len(jobs) for jobs in self._due.values())

    def _fire(self, moment: int) -> None:
        for job in self._due.pop(moment, ()):
            if job.waiting:  # else nobody needs it: its follower is gone or not waiting
                job.events.put_nowait(TICK)
