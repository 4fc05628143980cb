"""Hooks the scheduler calls as jobs and agents move, so others can watch without meddling.

The scheduler decides; observers only record (metrics, the dashboard's recent activity).
Every hook runs synchronously on the event loop and must not raise or block.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from control_plane.serving.fleet import AgentLink
    from control_plane.serving.jobs import Failed, InferenceJob
    from paddler import protocol

    JobOutcome: TypeAlias = protocol.Done | protocol.Embeddings | Failed


class SchedulerObserver:
    """Does nothing on every hook; subclasses override the ones they care about."""

    def job_submitted(self, job: InferenceJob) -> None:
        """``job`` entered its pool's queue (it may be dispatched right after)."""

    def job_rejected(self, job: InferenceJob) -> None:
        """``job`` was refused because its pool's buffer is full."""

    def job_dispatched(self, job: InferenceJob, link: AgentLink) -> None:
        """``job`` was sent to ``link`` (``job.attempts`` counts this attempt)."""

    def job_routed(self, job: InferenceJob, link: AgentLink, reason: str) -> None:
        """The router chose ``link`` for ``job`` for ``reason`` (see serving/prefix_routing.py)."""

    def job_started(self, job: InferenceJob, link: AgentLink) -> None:
        """The first token of ``job`` arrived from ``link``."""

    def job_requeued(self, job: InferenceJob, link: AgentLink) -> None:
        """``link`` vanished before ``job`` started; it waits again at the head of the queue."""

    def job_finished(self, job: InferenceJob, link: AgentLink, outcome: JobOutcome) -> None:
        """``job`` ended on ``link``: answered, or failed (``Failed``, also for a lost agent)."""

    def job_withdrawn(self, job: InferenceJob, reason: str) -> None:
        """The client went away or gave up (``reason``, e.g. ``buffer_timeout``)."""

    def agent_status(self, link: AgentLink, status: protocol.Status) -> None:
        """``link`` reported its state, slots and engine figures."""


class Observers(SchedulerObserver):
    """Several observers behind one: each hook is passed to all of them, in order."""

    def __init__(self, observers: Iterable[SchedulerObserver]) -> None:
        self._observers = tuple(observers)

    def job_submitted(self, job: InferenceJob) -> None:
        for observer in self._observers:
            observer.job_submitted(job)

    def job_rejected(self, job: InferenceJob) -> None:
        for observer in self._observers:
            observer.job_rejected(job)

    def job_dispatched(self, job: InferenceJob, link: AgentLink) -> None:
        for observer in self._observers:
            observer.job_dispatched(job, link)

    def job_routed(self, job: InferenceJob, link: AgentLink, reason: str) -> None:
        for observer in self._observers:
            observer.job_routed(job, link, reason)

    def job_started(self, job: InferenceJob, link: AgentLink) -> None:
        for observer in self._observers:
            observer.job_started(job, link)

    def job_requeued(self, job: InferenceJob, link: AgentLink) -> None:
        for observer in self._observers:
            observer.job_requeued(job, link)

    def job_finished(self, job: InferenceJob, link: AgentLink, outcome: JobOutcome) -> None:
        for observer in self._observers:
            observer.job_finished(job, link, outcome)

    def job_withdrawn(self, job: InferenceJob, reason: str) -> None:
        for observer in self._observers:
            observer.job_withdrawn(job, reason)

    def agent_status(self, link: AgentLink, status: protocol.Status) -> None:
        for observer in self._observers:
            observer.agent_status(link, status)
