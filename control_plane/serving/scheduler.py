"""The request buffer and dispatcher.

Jobs wait per pool in the buffer's order (put back first, then by priority, fairly across API keys;
without keys, FIFO: see buffer.py). Whenever a slot may have opened (a job arrived, a job finished,
an agent became ready) the pool is pumped: the head of its queue goes to the agent the balancer
picks. Embedding jobs only go to agents that serve embeddings; while none has a free slot, the
generation jobs queued behind them go ahead. Each kind has its own bound on the buffer, each key
one on its waiting jobs. An agent never gets more jobs than it has free slots, and a cancelled job
keeps its slot until the agent confirms it stopped. A job that ends without its whole answer (its
agent lost, stopping, or silent) is tried again elsewhere or failed: endings.py.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from control_plane.serving import endings
from control_plane.serving.agent_status import apply_status
from control_plane.serving.balancer import Routed, Router, choose_agent
from control_plane.serving.buffer import Buffer
from control_plane.serving.dispatch_order import DispatchOrder
from control_plane.serving.fleet import AgentLink, Fleet
from control_plane.serving.jobs import Failed, InferenceJob, Requeued, outcome_summary
from control_plane.serving.observer import SchedulerObserver
from control_plane.serving.rejections import BufferFull, KeyBufferFull, RejectionLog, refusal
from control_plane.serving.wake_ups import WakeUps
from paddler import protocol

__all__ = ["BufferFull", "KeyBufferFull", "Scheduler"]

logger = logging.getLogger("paddler.scheduler")


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
        self.rejections = RejectionLog()
        self._buffer = Buffer()
        self.wake_ups = WakeUps()  # of waiting jobs' followers
        self.router = Router(self.observer)  # each pool's routing policy is set on it
        self._stalled: set[AgentLink] = set()  # missed a deadline; no work until it answers
        self._leaving: set[AgentLink] = set()  # said goodbye: its loss is no crash

    # requests

    def submit(self, job: InferenceJob) -> None:
        """Dispatch ``job`` now if a slot is free, else buffer it; raise BufferFull if no room."""
        behind_others = self._buffer.count_like(job) > 0
        agents = [] if behind_others else self._candidates(job.pool)
        no_free_slot = (
            behind_others or choose_agent(agents, embeddings=job.wants_embeddings) is None
        )
        full = refusal(self._buffer, job, self.max_buffered) if no_free_slot else None
        if full is not None:
            self.counters[full.counter] += 1
            self.observer.job_rejected(job)
            self.rejections.refused(full)
            raise full
        self.rejections.accepted(job.pool, job.sender.key)
        self.counters["submitted"] += 1
        self.observer.job_submitted(job)
        nobody_waits = not self._buffer.count(job.pool)
        if not no_free_slot and nobody_waits and self._dispatch_now(job, agents):
            return
        self._buffer.append(job)
        self.pump(job.pool)
        if job.waiting and logger.isEnabledFor(logging.DEBUG):  # its dispatch line says the wait
            logger.debug(
                "buffered job %s for %s at position %d", job.id, job.pool, self.position(job)
            )

    def _dispatch_now(self, job: InferenceJob, agents: list[AgentLink]) -> bool:
        """Send a job that nobody waits before to its agent without passing through the buffer
        (which it would join and leave at once, leaving no trace); False if the router holds it
        back after all."""
        routed = self.router.route(job, agents, self.pump)
        if not isinstance(routed, Routed):
            return False
        job.queued_at = time.monotonic()
        self._assign(job, routed)
        return True

    def withdraw(self, job: InferenceJob, reason: str) -> None:
        """The client is gone or gave up: drop the job from the queue or cancel it on its agent."""
        if job.finished or job.withdrawn:
            return
        job.withdrawn = True
        self.counters[f"withdrawn_{reason}"] += 1
        self.observer.job_withdrawn(job, reason)
        if job.agent is None:
            self._buffer.remove(job)
            logger.info(
                "job %s left the queue of %s: %s", job.id, job.pool, reason, extra=job.log_extra
            )
        else:
            job.agent.send(protocol.Cancel(job_id=job.id))
            logger.info(
                "cancelling job %s on agent %s: %s",
                job.id,
                job.agent.name,
                reason,
                extra=job.log_extra,
            )

    def position(self, job: InferenceJob) -> int:
        """1-based place of a waiting job among its pool's jobs of its kind (0: not waiting)."""
        return self._buffer.position(job)

    def queued(self, pool: str) -> int:
        return self._buffer.count(pool)

    def buffered(self, pool: str) -> list[InferenceJob]:
        """The jobs of ``pool`` waiting for a slot, in the order they are to be served."""
        return self._buffer.waiting(pool)

    def pump(self, pool: str) -> None:
        """Dispatch waiting jobs, in order, to agents that can take them: dispatch_order.py."""
        if not self._buffer.count(pool):
            return
        agents = self._candidates(pool)
        order = DispatchOrder(self._buffer, pool)
        while (job := order.next()) is not None:
            # an agent still letting go of this job (given up on) cannot take it again yet
            fit = [agent for agent in agents if job.id not in agent.jobs]
            routed = self.router.route(job, fit, self.pump)
            if isinstance(routed, Routed):
                self._buffer.remove(job)
                self._assign(job, routed)
            elif not order.left_waiting(job, routed):
                return  # no agent has a free slot

    def _candidates(self, pool: str) -> list[AgentLink]:
        return [link for link in self.fleet.in_pool(pool) if link not in self._stalled]

    def _assign(self, job: InferenceJob, routed: Routed) -> None:
        link = routed.link
        job.agent = link
        job.dispatched_at = time.monotonic()
        job.attempts += 1
        link.jobs[job.id] = job
        link.last_assigned_at = time.monotonic()
        link.send(protocol.Job(job_id=job.id, request=job.request, request_id=job.request_id))
        self.counters["dispatched"] += 1
        self.observer.job_dispatched(job, link)
        waited = time.monotonic() - job.admitted_at
        logger.info(  # the request's one line at INFO when all goes well (its end is DEBUG)
            "dispatched job %s to agent %s (attempt %d, waited %.2fs, %d/%d slots busy): %s",
            job.id,
            link.name,
            job.attempts,
            waited,
            len(link.jobs),
            link.slots,
            "embeddings" if routed.decision is None else routed.decision,
            extra=job.log_extra,
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
        self._stalled.discard(link)
        self._leaving.discard(link)

    def agent_message(self, link: AgentLink, message: protocol.AgentMessage) -> None:
        match message:
            case protocol.Status():
                became_ready = apply_status(link, message)
                self.observer.agent_status(link, message)
                if became_ready:
                    self.pump(link.pool)
            case protocol.Token() | protocol.Tokens():
                self._heard_from(link)
                for piece in message.pieces if isinstance(message, protocol.Tokens) else [message]:
                    self._relay_token(link, piece)
            case protocol.Done() | protocol.Embeddings():
                self._finish(link, message.job_id, message)
            case protocol.JobError():
                self._finish(link, message.job_id, Failed(message.code, message.message))
            case protocol.Hello():
                logger.warning("agent %s sent a second hello; ignored", link.name)
            case protocol.Goodbye():
                self._leaving.add(link)
                logger.info("agent %s is leaving: %s", link.name, message.reason)

    def _relay_token(self, link: AgentLink, piece: protocol.Token) -> None:
        job = link.jobs.get(piece.job_id)
        if job is not None and job.agent is link and not job.withdrawn and not job.finished:
            if not job.started:
                self.observer.job_started(job, link)
            job.started = True
            job.events.put_nowait(piece)

    def deadline_passed(self, job: InferenceJob, waited: float) -> None:
        """``job``'s agent sent nothing for it in time: cancel it there (the slot stays taken
        until the agent confirms), give that agent no work until it answers, retry or fail."""
        link = job.agent
        if not isinstance(link, AgentLink) or job.finished or job.withdrawn:
            return
        self._stalled.add(link)
        self.counters["agent_stalled"] += 1
        logger.warning(
            "agent %s sent nothing for job %s in %.0fs; no new work goes to it until it answers",
            link.name,
            job.id,
            waited,
            extra=job.log_extra,
        )
        link.send(protocol.Cancel(job_id=job.id))
        failure = endings.after_deadline(job, link.name, waited, max_attempts=self.max_attempts)
        self._retry_or_fail(job, link, failure)
        self.pump(link.pool)

    def _heard_from(self, link: AgentLink) -> None:
        if link in self._stalled:
            self._stalled.discard(link)
            logger.info("agent %s answers again; it gets work again", link.name)
            self.pump(link.pool)

    def _finish(
        self, link: AgentLink, job_id: str, outcome: protocol.Done | protocol.Embeddings | Failed
    ) -> None:
        self._heard_from(link)
        job = link.jobs.pop(job_id, None)
        if job is None:
            logger.warning("agent %s finished unknown job %s", link.name, job_id)
            return
        if job.agent is not link or job.finished:
            logger.info("agent %s let go of job %s, given up on earlier", link.name, job.id)
        elif job.withdrawn:
            job.finished = True
            self.counters["failed" if isinstance(outcome, Failed) else "finished"] += 1
            self.observer.job_finished(job, link, outcome)
        elif isinstance(outcome, protocol.Done) and outcome.finish_reason == "cancelled":
            failure = endings.after_agent_stopped(job, link.name, max_attempts=self.max_attempts)
            self._retry_or_fail(job, link, failure)
        elif isinstance(outcome, Failed):
            self._fail(job, link, outcome)
        else:
            job.finished = True
            self.counters["finished"] += 1
            self.observer.job_finished(job, link, outcome)
            summary = outcome_summary(outcome)
            logger.debug(
                "job %s finished on agent %s: %s", job.id, link.name, summary, extra=job.log_extra
            )
            job.events.put_nowait(outcome)
        self.pump(link.pool)

    def _release_jobs_of(self, link: AgentLink) -> None:
        """The agent is gone: retry what it had not started, fail what it had."""
        jobs = sorted(link.jobs.values(), key=lambda job: job.admitted_at, reverse=True)
        link.jobs.clear()
        said_goodbye = link in self._leaving
        for job in jobs:
            if job.finished or job.agent is not link:
                continue
            if "shutdown" in link.holds:
                failure: Failed | None = endings.at_control_plane_shutdown(job)
            else:
                failure = endings.after_agent_lost(
                    job, link.name, max_attempts=self.max_attempts, said_goodbye=said_goodbye
                )
            self._retry_or_fail(job, link, failure)
        self.pump(link.pool)

    def _retry_or_fail(self, job: InferenceJob, link: AgentLink, failure: Failed | None) -> None:
        """Put ``job``, which ``link`` will not answer, back at the head of its queue, or fail
        it with ``failure``."""
        if failure is not None:
            self._fail(job, link, failure)
            return
        job.agent = None
        self._buffer.put_back(job)
        self.counters["requeued"] += 1
        self.observer.job_requeued(job, link)
        logger.warning(
            "agent %s will not answer job %s, which had no token yet; requeued at the head%s",
            link.name,
            job.id,
            " (suspect: an agent was lost prefilling it)" if job.agents_lost_in_prefill else "",
            extra=job.log_extra,
        )
        job.events.put_nowait(Requeued(agent_name=link.name))

    def _fail(self, job: InferenceJob, link: AgentLink, failure: Failed) -> None:
        job.finished = True
        self.counters[failure.code if failure.code in endings.CODES else "failed"] += 1
        self.observer.job_finished(job, link, failure)
        logger.warning(
            "job %s failed on agent %s: %s: %s",
            job.id,
            link.name,
            failure.code,
            failure.message,
            extra=job.log_extra,
        )
        job.events.put_nowait(failure)
