"""The jobs waiting for a slot, per pool, oldest first.

Embedding jobs can only go to agents that serve embeddings, so they are counted apart from
generation jobs: a buffer full of one kind never turns the other away.
"""

from __future__ import annotations

import time
from collections import deque

from control_plane.serving.jobs import InferenceJob


class Buffer:
    def __init__(self) -> None:
        self._queues: dict[str, deque[InferenceJob]] = {}

    def append(self, job: InferenceJob) -> None:
        job.queued_at = time.monotonic()
        self._queue(job.pool).append(job)

    def put_back(self, job: InferenceJob) -> None:
        """``job`` was sent to an agent that will not answer it: it goes first again."""
        job.queued_at = time.monotonic()
        self._queue(job.pool).appendleft(job)

    def remove(self, job: InferenceJob) -> None:
        self._queue(job.pool).remove(job)

    def waiting(self, pool: str) -> list[InferenceJob]:
        """The jobs of ``pool`` waiting for a slot, oldest first."""
        return list(self._queues.get(pool, ()))

    def waiting_like(self, job: InferenceJob) -> list[InferenceJob]:
        """The waiting jobs of ``job``'s pool that the same agents could serve, oldest first."""
        return [
            other
            for other in self._queues.get(job.pool, ())
            if other.wants_embeddings == job.wants_embeddings
        ]

    def position(self, job: InferenceJob) -> int:
        """1-based place of a waiting job among its pool's jobs of its kind (0: not waiting)."""
        like = self.waiting_like(job)
        return like.index(job) + 1 if job in like else 0

    def count(self, pool: str) -> int:
        return len(self._queues.get(pool, ()))

    def _queue(self, pool: str) -> deque[InferenceJob]:
        return self._queues.setdefault(pool, deque())
