"""Follow a job from the buffer to its last token, as the HTTP handlers need it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from control_plane import errors, serving_errors
from control_plane.serving import endings
from control_plane.serving.jobs import Failed, InferenceJob, Requeued, Tick
from control_plane.serving.scheduler import Scheduler
from control_plane.serving.wake_ups import TICK
from paddler.protocol import Done, Embeddings, Token


@dataclass(frozen=True)
class Patience:
    """How long a job may wait at each stage, and how often its follower hears it is alive."""

    buffer_timeout: float  # for a free slot
    first_token_timeout: float  # from dispatch to the agent's first token (or embeddings)
    stall_timeout: float  # between two tokens of a started job
    report_interval: float  # between two ``Waiting`` reports while buffered
    keepalive_interval: float  # of silence from the agent before a ``KeepAlive``


@dataclass(frozen=True)
class Waiting:
    position: int
    seconds_waited: float
    expected_wait: float | None = None  # seconds until a cold start under way should serve


@dataclass(frozen=True)
class KeepAlive:
    """The job is with an agent that has sent nothing for a while (a long prefill, say)."""


Update = Waiting | KeepAlive | Token | Done | Embeddings


async def follow(
    job: InferenceJob,
    scheduler: Scheduler,
    patience: Patience,
    *,
    expected_wait: Callable[[], float | None] = lambda: None,
    reports: Callable[[Waiting], None] | None = None,
) -> AsyncIterator[Update]:
    """Yield ``Waiting`` now and then while the job is buffered, ``KeepAlive`` while its agent
    is silent, then its outcome: a generation job's ``Token`` pieces and ``Done``, or an embedding
    job's ``Embeddings``.

    An agent that misses a deadline of ``patience`` is given up on: the scheduler tries the job
    elsewhere or fails it. Raises ``OpenAIError`` when the job waited past ``buffer_timeout``
    or failed. The caller must withdraw the job from the scheduler when it stops following
    early.

    With ``reports``, the ``Waiting`` reports are not yielded: the scheduler's wake-up timer
    hands each to ``reports`` itself, and the follower sleeps while the job waits (thousands may
    wait: a report then costs no task wake-up and no pass through the caller's generators).
    ``reports`` must not wait; it is not called once the job stops waiting.
    """
    last_heard = time.monotonic()
    report_due: float | None = None  # of a waiting job's next report
    timed = None
    if reports is not None:
        timed = _TimedReports(job, scheduler, patience, expected_wait, reports)
    try:
        while True:
            if job.events.empty():  # events already in (a slow client's backlog) beat any deadline
                now = time.monotonic()
                if job.waiting:
                    deadline = job.queued_at + patience.buffer_timeout
                    if now >= deadline:
                        scheduler.withdraw(job, "buffer_timeout")
                        raise serving_errors.buffer_timeout(patience.buffer_timeout)
                    if report_due is None:
                        report_due = now + patience.report_interval
                        if timed is not None:
                            timed.due = report_due
                    elif timed is None and now >= report_due:
                        report_due = None
                        yield Waiting(
                            scheduler.position(job), now - job.admitted_at, expected_wait()
                        )
                        continue
                    # no timer of its own: thousands may wait (see wake_ups.py)
                    if timed is not None:
                        timed.arm()  # the timer reports, and ticks at the deadline
                    else:
                        scheduler.wake_ups.wake(job, min(report_due, deadline))
                    event = await job.events.get()
                else:
                    timeout: float | None = None
                    if not (job.finished or job.withdrawn or job.dispatched_at is None):
                        since = last_heard if job.started else max(last_heard, job.dispatched_at)
                        limit = (
                            patience.stall_timeout if job.started else patience.first_token_timeout
                        )
                        remaining = since + limit - now
                        if remaining <= 0:
                            scheduler.deadline_passed(job, now - since)
                            continue
                        timeout = min(patience.keepalive_interval, remaining)
                    # else its outcome is on its way (or nobody waits for it): no timeout
                    try:
                        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
                        # cancellation of a client that left if an event arrives at that moment
                        async with asyncio.timeout(timeout):
                            event = await job.events.get()
                    except TimeoutError:
                        yield KeepAlive()
                        continue
            else:
                event = job.events.get_nowait()
            if isinstance(event, Tick):
                continue  # the loop looks at the clock (a wake-up for an earlier wait is stale)
            report_due = None
            last_heard = time.monotonic()
            match event:
                case Requeued():
                    pass  # it waits again, for a whole buffer_timeout
                case Token():
                    yield event
                case Done() | Embeddings():
                    yield event
                    return
                case Failed():
                    raise _client_error(event)
    finally:
        if timed is not None:
            timed.stop()  # the timer may hold it a while yet: not its caller's state


class _TimedReports:
    """A waiting job's ``Waiting`` reports, made at the scheduler's wake-ups and handed on
    there; at its buffer deadline a ``Tick`` wakes its follower, which gives up waiting. Its
    wake-ups stop once the job does not wait (within a report interval, so a job served long
    before its deadline is not held by the timer)."""

    __slots__ = ("_armed", "_expected_wait", "_job", "_patience", "_reports", "_scheduler", "due")

    def __init__(
        self,
        job: InferenceJob,
        scheduler: Scheduler,
        patience: Patience,
        expected_wait: Callable[[], float | None],
        reports: Callable[[Waiting], None],
    ) -> None:
        self._job = job
        self._scheduler = scheduler
        self._patience = patience
        self._expected_wait = expected_wait
        self._reports = reports
        self._armed = False
        self.due = 0.0  # time.monotonic() of the next report, as the follower sets it

    def arm(self) -> None:
        """Make sure a wake-up is coming (the follower calls this each time it waits)."""
        if not self._armed:
            self._armed = True
            self._wake()

    def stop(self) -> None:
        """Hand no more reports on (the follower is done)."""
        self._reports = unheard

    def _wake(self) -> None:
        deadline = self._job.queued_at + self._patience.buffer_timeout
        self._scheduler.wake_ups.wake(self._job, min(self.due, deadline), self._fire)

    def _fire(self) -> None:
        job = self._job
        if not job.waiting:
            self._armed = False
            return
        now = time.monotonic()
        if now >= job.queued_at + self._patience.buffer_timeout:
            self._armed = False
            job.events.put_nowait(TICK)
            return
        if now >= self.due:
            self.due = now + self._patience.report_interval
            waited = now - job.admitted_at
            self._reports(Waiting(self._scheduler.position(job), waited, self._expected_wait()))
        self._wake()


def unheard(update: Waiting) -> None:
    """Where reports nobody hears go: those of a completion that is not streamed, or of a job
    whose follower is done."""


def at_hand(job: InferenceJob) -> bool:
    """Whether following ``job`` can go on at once, with nothing to wait for: a token is in its
    events, or its end has been taken (after its end, a stream writes its last events with no
    wait). A stream writes what is at hand together (``server_sent_events.coalesced``).

    Told from the number of its events and the job's flags, as the scheduler keeps them: a
    ``Tick`` or ``Requeued`` comes only before a job's first token (a started job never waits
    again), so a started job holds a token whenever it holds anything but its end; the end is
    put as the job is marked finished, so a finished job holds a token before its end when it
    holds two events or more, and has had its end taken when it holds none (as has a withdrawn
    job: its follower gave up or is gone). The end alone is not at hand: what it leads to may
    wait (the Responses API stores the response before its last events). Nothing is at hand
    while the job waits or prefills: each report and keep-alive goes out as it comes.
    """
    held = job.events.qsize()
    if job.finished or job.withdrawn:
        return held == 0 or (job.started and held > 1)
    return job.started and held > 0


def _client_error(failure: Failed) -> errors.OpenAIError:
    match failure.code:
        case endings.AGENT_LOST:
            return serving_errors.agent_lost(failure.message)
        case endings.SHUTDOWN:
            return serving_errors.agent_shutdown(failure.message)
        case endings.AGENT_TIMEOUT:
            return serving_errors.agent_timeout(failure.message)
        case endings.JOB_CRASHED_AGENTS:
            return serving_errors.job_crashed_agents(failure.message)
        case "capacity_unavailable":
            return serving_errors.capacity_unavailable(failure.message)
    return serving_errors.agent_error(failure.code, failure.message)
