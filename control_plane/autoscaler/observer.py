"""What the autoscaler learns from the scheduler's hooks (``control_plane.serving.observer``).

- Times on each agent link, for the cold-start breakdown and scale-down: its first ``ready``
  status (model loaded), its first token, and since when it has had no job.
- The jobs waiting in each pool's queue, so that a pool marked failing can answer them 503
  ``capacity_unavailable`` at once, and so that the autoscaler wakes as soon as one arrives.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from control_plane.serving.fleet import AgentLink
from control_plane.serving.jobs import Failed, InferenceJob
from control_plane.serving.observer import SchedulerObserver
from control_plane.serving.scheduler import Scheduler
from paddler import protocol

CAPACITY_UNAVAILABLE = "capacity_unavailable"


class AutoscalerObserver(SchedulerObserver):
    def __init__(self, wake: Callable[[str], None] = lambda pool: None) -> None:
        self.wake = wake  # the pool's autoscaler should tick now
        self._waiting: dict[str, dict[str, InferenceJob]] = {}  # pool -> job id -> job

    def waiting(self, pool: str) -> list[InferenceJob]:
        return [job for job in self._waiting.get(pool, {}).values() if job.waiting]

    def fail_waiting(self, scheduler: Scheduler, pool: str, reason: str) -> int:
        """Answer every job waiting in ``pool`` with ``capacity_unavailable``; how many."""
        jobs = self.waiting(pool)
        for job in jobs:
            scheduler.withdraw(job, CAPACITY_UNAVAILABLE)
            job.events.put_nowait(Failed(CAPACITY_UNAVAILABLE, reason))
        return len(jobs)

    # hooks

    def job_submitted(self, job: InferenceJob) -> None:
        self._waiting.setdefault(job.pool, {})[job.id] = job
        self.wake(job.pool)

    def job_requeued(self, job: InferenceJob, link: AgentLink) -> None:
        self._waiting.setdefault(job.pool, {})[job.id] = job
        self.wake(job.pool)

    def job_dispatched(self, job: InferenceJob, link: AgentLink) -> None:
        self._forget(job)

    def job_withdrawn(self, job: InferenceJob, reason: str) -> None:
        self._forget(job)

    def job_rejected(self, job: InferenceJob) -> None:
        self._forget(job)

    def job_started(self, job: InferenceJob, link: AgentLink) -> None:
        if link.first_token_at is None:
            link.first_token_at = time.time()
            self.wake(link.pool)

    def job_finished(
        self,
        job: InferenceJob,
        link: AgentLink,
        outcome: protocol.Done | protocol.Embeddings | Failed,
    ) -> None:
        self._forget(job)
        if not link.jobs:
            link.idle_since = time.time()

    def agent_status(self, link: AgentLink, status: protocol.Status) -> None:
        if status.state == "ready" and link.ready_at is None:
            link.ready_at = time.time()
            self.wake(link.pool)

    def _forget(self, job: InferenceJob) -> None:
        jobs = self._waiting.get(job.pool)
        if jobs is not None:
            jobs.pop(job.id, None)
            if not jobs:
                del self._waiting[job.pool]
