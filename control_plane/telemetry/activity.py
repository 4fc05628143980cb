"""What happened lately, for the dashboard: request rate per pool and the latest errors."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from control_plane.serving.fleet import AgentLink
from control_plane.serving.jobs import Failed, InferenceJob
from control_plane.serving.observer import SchedulerObserver

if TYPE_CHECKING:
    from control_plane.serving.observer import JobOutcome

RATE_WINDOW_SECONDS = 60.0
ERRORS_KEPT = 20


@dataclass(frozen=True)
class RecentError:
    at: float  # unix time
    pool: str
    code: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class RecentActivity(SchedulerObserver):
    """Jobs answered in the last minute and the last few failures, fed by scheduler hooks."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._answered: dict[str, deque[float]] = {}
        self.errors: deque[RecentError] = deque(maxlen=ERRORS_KEPT)

    def requests_per_minute(self, pool: str) -> float:
        """Jobs of ``pool`` answered during the last minute."""
        times = self._answered.get(pool)
        if not times:
            return 0.0
        self._forget_old(times)
        return len(times) * 60.0 / RATE_WINDOW_SECONDS

    def recent_errors(self) -> list[RecentError]:
        """Newest first."""
        return list(reversed(self.errors))

    def _forget_old(self, times: deque[float]) -> None:
        horizon = self._clock() - RATE_WINDOW_SECONDS
        while times and times[0] < horizon:
            times.popleft()

    def _error(self, pool: str, code: str, message: str) -> None:
        self.errors.append(RecentError(self._clock(), pool, code, message))

    # scheduler hooks

    def job_rejected(self, job: InferenceJob) -> None:
        self._error(job.pool, "buffer_full", "rejected: the request buffer is full")

    def job_finished(self, job: InferenceJob, link: AgentLink, outcome: JobOutcome) -> None:
        if isinstance(outcome, Failed):
            self._error(job.pool, outcome.code, f"agent {link.name}: {outcome.message}")
            return
        times = self._answered.setdefault(job.pool, deque())
        times.append(self._clock())
        self._forget_old(times)

    def job_withdrawn(self, job: InferenceJob, reason: str) -> None:
        if reason == "buffer_timeout":
            self._error(job.pool, reason, "no agent became available in time")
