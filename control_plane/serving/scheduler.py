"""The request buffer and dispatcher.

Jobs wait per pool in FIFO order. Whenever a slot may have opened (a job arrived, a job
finished, an agent became ready) the pool is pumped: the head of its queue goes to the agent
the balancer picks. Embedding jobs only go to agents that serve embeddings; while none has a
free slot, the generation jobs queued behind them go ahead. An agent never gets more jobs than
it has free slots, and a cancelled job keeps its slot until the agent confirms it stopped.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque

from control_plane.serving.balancer import choose_agent
from control_plane.serving.fleet import AgentLink, Fleet
from control_plane.serving.jobs import Failed, InferenceJob, Requeued, TextPiece
from control_plane.serving.observer import SchedulerObserver
from paddler import protocol

logger = logging.getLogger("paddler.scheduler")


class BufferFull(Exception):
    def __init__(self, pool: str, size: int) -> None:
        super().__init__(f"the request buffer of model {pool!r} is full ({size} waiting)")
        self.pool = pool
        self.size = size


class Scheduler:
    def __init__(
        self,
        fleet: Fleet,
        *,
        max_buffered: int,
        max_attempts: int,
        observer: SchedulerObserver | None = None,
    ) -> None:
        self.fleet = fleet
        self.observer = observer or SchedulerObserver()
        self.max_buffered = max_buffered
        self.max_attempts = max_attempts
        self.counters: Counter[str] = Counter()
        self._queues: dict[str, deque[InferenceJob]] = {}

    # requests

    def submit(self, job: InferenceJob) -> None:
        """Dispatch ``job`` now if a slot is free, else buffer it; raise BufferFull if no room."""
        queue = self._queues.setdefault(job.pool, deque())
        no_free_slot = (
            bool(queue)
            or choose_agent(self.fleet.in_pool(job.pool), embeddings=job.wants_embeddings) is None
        )
        if no_free_slot and len(queue) >= self.max_buffered:
            self.counters["rejected_buffer_full"] += 1
            self.observer.job_rejected(job)
            logger.warning("rejected job %s: buffer of %s is full", job.id, job.pool)
            raise BufferFull(job.pool, len(queue))
        queue.append(job)
        self.counters["submitted"] += 1
        self.observer.job_submitted(job)
        self.pump(job.pool)
        if job.waiting:
            logger.info("buffered job %s for %s at position %d", job.id, job.pool, len(queue))

    def withdraw(self, job: InferenceJob, reason: str) -> None:
        """The client is gone or gave up: drop the job from the queue or cancel it on its agent."""
        if job.finished or job.withdrawn:
            return
        job.withdrawn = True
        self.counters[f"withdrawn_{reason}"] += 1
        self.observer.job_withdrawn(job, reason)
        if job.agent is None:
            self._queues[job.pool].remove(job)
            logger.info(
                "job %s left the queue of %s: %s", job.id, job.pool, reason, extra=_tagged(job)
            )
        else:
            job.agent.send(protocol.Cancel(job_id=job.id))
            logger.info(
                "cancelling job %s on agent %s: %s",
                job.id,
                job.agent.name,
                reason,
                extra=_tagged(job),
            )

    def position(self, job: InferenceJob) -> int:
        """1-based place of a waiting job in its pool's queue (0 if it is not waiting)."""
        try:
            return self._queues[job.pool].index(job) + 1
        except (KeyError, ValueError):
            return 0

    def queued(self, pool: str) -> int:
        return len(self._queues.get(pool, ()))

    def buffered(self, pool: str) -> list[InferenceJob]:
        """The jobs of ``pool`` waiting for a slot, oldest first."""
        return list(self._queues.get(pool, ()))

    def pump(self, pool: str) -> None:
        """Dispatch waiting jobs, oldest first, to agents that can take them."""
        queue = self._queues.get(pool)
        if not queue:
            return
        agents = self.fleet.in_pool(pool)
        embedding_slots_left = True
        for job in list(queue):
            if job.wants_embeddings and not embedding_slots_left:
                continue
            link = choose_agent(agents, embeddings=job.wants_embeddings)
            if link is None:
                if not job.wants_embeddings:
                    return  # no agent has a free slot
                embedding_slots_left = False
                continue
            queue.remove(job)
            self._assign(job, link)

    def _assign(self, job: InferenceJob, link: AgentLink) -> None:
        job.agent = link
        job.attempts += 1
        link.jobs[job.id] = job
        link.last_assigned_at = time.monotonic()
        link.send(protocol.Job(job_id=job.id, request=job.request, request_id=job.request_id))
        self.counters["dispatched"] += 1
        self.observer.job_dispatched(job, link)
        waited = time.monotonic() - job.enqueued_at
        logger.info(
            "dispatched job %s to agent %s (attempt %d, waited %.2fs, %d/%d slots busy)",
            job.id,
            link.name,
            job.attempts,
            waited,
            len(link.jobs),
            link.slots,
            extra=_tagged(job),
        )

    # agents

    def agent_joined(self, link: AgentLink) -> None:
        replaced = self.fleet.add(link)
        if replaced is not None:
            logger.info("agent %s reconnected; dropping its previous connection", link.name)
            self._release_jobs_of(replaced)
        self.pump(link.pool)

    def agent_left(self, link: AgentLink) -> None:
        if self.fleet.remove(link):
            self._release_jobs_of(link)

    def agent_message(self, link: AgentLink, message: protocol.AgentMessage) -> None:
        match message:
            case protocol.Status():
                was = link.state
                if message.issues != link.issues:
                    for issue in message.issues:
                        logger.warning("agent %s reports: %s", link.name, issue)
                link.applied_version = message.applied_version
                link.model = message.model  # a desired state may change the model and slots
                link.slots = message.slots_total or link.slots
                link.reported_state = message.state
                link.issues = message.issues
                link.engine = message.engine
                link.cpu = message.cpu or link.cpu
                link.download_progress = message.download_progress
                self.observer.agent_status(link, message)
                if link.state == "ready" and was != "ready":
                    logger.info(
                        "agent %s is ready with %d slots (%s)",
                        link.name,
                        link.slots,
                        link.cpu.summary if link.cpu else "cpu path not reported",
                    )
                    self.pump(link.pool)
            case protocol.Token():
                job = link.jobs.get(message.job_id)
                if job is not None and not job.withdrawn:
                    if not job.started:
                        self.observer.job_started(job, link)
                    job.started = True
                    job.events.put_nowait(TextPiece(message.text))
            case protocol.Done() | protocol.Embeddings():
                self._finish(link, message.job_id, message)
            case protocol.JobError():
                self._finish(link, message.job_id, Failed(message.code, message.message))
            case protocol.Hello():
                logger.warning("agent %s sent a second hello; ignored", link.name)
            case protocol.Goodbye():
                logger.info("agent %s is leaving: %s", link.name, message.reason)

    def _finish(
        self, link: AgentLink, job_id: str, outcome: protocol.Done | protocol.Embeddings | Failed
    ) -> None:
        job = link.jobs.pop(job_id, None)
        if job is None:
            logger.warning("agent %s finished unknown job %s", link.name, job_id)
            return
        job.finished = True
        self.observer.job_finished(job, link, outcome)
        if isinstance(outcome, Failed):
            self.counters["failed"] += 1
            logger.warning(
                "job %s failed on agent %s: %s", job.id, link.name, outcome.code, extra=_tagged(job)
            )
        else:
            self.counters["finished"] += 1
            logger.info(
                "job %s finished on agent %s: %s",
                job.id,
                link.name,
                _summary(outcome),
                extra=_tagged(job),
            )
        if not job.withdrawn:
            job.events.put_nowait(outcome)
        self.pump(link.pool)

    def _release_jobs_of(self, link: AgentLink) -> None:
        """The agent is gone: retry what it had not started, fail what it had."""
        jobs = sorted(link.jobs.values(), key=lambda job: job.enqueued_at, reverse=True)
        link.jobs.clear()
        queue = self._queues.setdefault(link.pool, deque())
        for job in jobs:
            if job.withdrawn or job.finished:
                continue
            if not job.started and job.attempts < self.max_attempts:
                job.agent = None
                queue.appendleft(job)
                self.counters["requeued"] += 1
                self.observer.job_requeued(job, link)
                logger.warning(
                    "agent %s lost before job %s started; requeued at the head",
                    link.name,
                    job.id,
                    extra=_tagged(job),
                )
                job.events.put_nowait(Requeued(agent_name=link.name))
            else:
                job.finished = True
                self.counters["agent_lost"] += 1
                logger.warning(
                    "agent %s lost while running job %s", link.name, job.id, extra=_tagged(job)
                )
                lost = Failed("agent_lost", f"agent {link.name} was lost while serving the request")
                self.observer.job_finished(job, link, lost)
                job.events.put_nowait(lost)
        self.pump(link.pool)


def _tagged(job: InferenceJob) -> dict[str, str]:
    """Log ``extra`` that ties a line to the client request (see paddler/logs/py)."""
    return {"request_id": job.request_id}


def _summary(outcome: protocol.Done | protocol.Embeddings) -> str:
    """What a finished job produced, for the log."""
    if isinstance(outcome, protocol.Embeddings):
        return f"{len(outcome.vectors)} embeddings of {outcome.prompt_tokens} tokens"
    usage = outcome.usage
    return (
        f"{outcome.finish_reason}, {usage.prompt_tokens}+{usage.completion_tokens} tokens "
        f"in {outcome.seconds_total:.2f}s"
    )
