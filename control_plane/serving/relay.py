"""Follow a job from the buffer to its last token, as the HTTP handlers need it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from control_plane import errors
from control_plane.serving.jobs import Failed, InferenceJob, Requeued, TextPiece
from control_plane.serving.scheduler import Scheduler
from paddler.protocol import Done, Embeddings


@dataclass(frozen=True)
class Waiting:
    position: int
    seconds_waited: float
    expected_wait: float | None = None  # seconds until a cold start under way should serve


Update = Waiting | TextPiece | Done | Embeddings


async def follow(
    job: InferenceJob,
    scheduler: Scheduler,
    *,
    buffer_timeout: float,
    report_interval: float,
    expected_wait: Callable[[], float | None] = lambda: None,
) -> AsyncIterator[Update]:
    """Yield ``Waiting`` now and then while the job is buffered, then its outcome.

    A generation job's outcome is its text pieces and ``Done``; an embedding job's is
    ``Embeddings``.

    Raises ``OpenAIError`` when the job waited past ``buffer_timeout`` or failed on its agent.
    The caller must withdraw the job from the scheduler when it stops following early.
    """
    loop = asyncio.get_running_loop()
    waiting_since = loop.time()
    while True:
        timeout = None
        if job.waiting:
            remaining = waiting_since + buffer_timeout - loop.time()
            if remaining <= 0:
                scheduler.withdraw(job, "buffer_timeout")
                raise errors.buffer_timeout(buffer_timeout)
            timeout = min(report_interval, remaining)
        try:
            event = await asyncio.wait_for(job.events.get(), timeout)
        except TimeoutError:
            if job.waiting:
                yield Waiting(
                    scheduler.position(job), loop.time() - job.enqueued_at, expected_wait()
                )
            continue
        match event:
            case Requeued():
                waiting_since = loop.time()
            case TextPiece():
                yield event
            case Done() | Embeddings():
                yield event
                return
            case Failed(code="agent_lost"):
                raise errors.agent_lost(event.message)
            case Failed(code="capacity_unavailable"):
                raise errors.capacity_unavailable(event.message)
            case Failed():
                raise errors.agent_error(event.code, event.message)
