"""Settles each job's ticket when the scheduler says the job has ended.

A job ends for tenancy when it finishes (answered: its real usage; failed: an error without
tokens), when it is withdrawn while still waiting (no tokens), or when the buffer turns it
away (no tokens). A job withdrawn while an agent runs it ends when the agent confirms the
cancel (``job_finished``, with the usage so far), or fails if the agent is lost first.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from control_plane.serving.jobs import Failed, InferenceJob
from control_plane.serving.observer import SchedulerObserver
from control_plane.tenancy.tickets import Outcome, Ticket
from paddler import protocol

if TYPE_CHECKING:
    from control_plane.serving.fleet import AgentLink
    from control_plane.serving.observer import JobOutcome


class TenancyObserver(SchedulerObserver):
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: the clock of the jobs' own times."""
        self._tickets: dict[str, tuple[InferenceJob, Ticket]] = {}
        self._clock = clock

    def register(self, job: InferenceJob, ticket: Ticket) -> None:
        """``ticket`` is settled when ``job`` ends; register before submitting the job."""
        self._tickets[job.id] = (job, ticket)

    @property
    def unsettled(self) -> int:
        """The number of registered jobs whose tickets are not settled yet."""
        return len(self._tickets)

    def job_rejected(self, job: InferenceJob) -> None:
        self._settle(job, outcome="rejected")

    def job_finished(self, job: InferenceJob, link: AgentLink, outcome: JobOutcome) -> None:
        waited = 0.0 if job.dispatched_at is None else job.dispatched_at - job.admitted_at
        ended: Outcome = "withdrawn" if job.withdrawn else "ok"
        match outcome:
            case Failed():
                self._settle(job, outcome="error", queue_seconds=waited)
            case protocol.Embeddings():
                self._settle(job, outcome.prompt_tokens, outcome=ended, queue_seconds=waited)
            case protocol.Done(usage=usage):
                self._settle(
                    job,
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    outcome=ended,
                    queue_seconds=waited,
                )

    def job_withdrawn(self, job: InferenceJob, reason: str) -> None:
        if job.agent is None:
            waited = self._clock() - job.admitted_at
            self._settle(job, outcome="withdrawn", queue_seconds=waited)

    def _settle(
        self,
        job: InferenceJob,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        *,
        outcome: Outcome,
        queue_seconds: float = 0.0,
    ) -> None:
        entry = self._tickets.pop(job.id, None)
        if entry is not None:
            _, ticket = entry
            ticket.settle(
                prompt_tokens, completion_tokens, outcome=outcome, queue_seconds=queue_seconds
            )
