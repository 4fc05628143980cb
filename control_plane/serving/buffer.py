"""The jobs waiting for a slot, per pool, oldest first.

Embedding jobs can only go to agents that serve embeddings, so they are counted apart from
generation jobs: a buffer full of one kind never turns the other away.

Thousands of jobs may wait, and each asks for its place every few seconds, so no operation
walks the queue: a job leaves it in O(1) and its place is known in O(log n) (see ``_Line``).
A pool whose queue empties is dropped, so that the memory of a long queue is given back.
"""

from __future__ import annotations

import bisect
import time
from collections import OrderedDict
from collections.abc import Iterator

from control_plane.serving.jobs import InferenceJob


class _Line:
    """The waiting jobs of one kind in one pool, oldest first, each with a rank.

    Ranks grow towards the back (``push_front`` takes one below the lowest) and are never
    reused, so a job's place is its rank less the ranks ahead of it that already left: those
    are the ranks between ``_front`` and the head, which are skipped at once, plus the ones
    left from the middle (withdrawn jobs), kept sorted in ``_gone``.
    """

    def __init__(self) -> None:
        self._start()

    def _start(self) -> None:
        self.jobs: OrderedDict[InferenceJob, tuple[int, int]] = OrderedDict()  # (order, rank)
        self._front = 0  # the live ranks are in (_front, _back]
        self._back = 0
        self._gone: list[int] = []  # ranks in (_front, _back] of jobs that left

    def push(self, job: InferenceJob, order: int) -> None:
        self._back += 1
        self.jobs[job] = (order, self._back)

    def push_front(self, job: InferenceJob, order: int) -> None:
        self.jobs[job] = (order, self._front)
        self.jobs.move_to_end(job, last=False)
        self._front -= 1

    def remove(self, job: InferenceJob) -> None:
        _, rank = self.jobs.pop(job)
        if not self.jobs:
            self._start()  # drained: afresh, small again (a dict never shrinks)
            return
        head = next(iter(self.jobs.values()))[1]
        if rank < head:  # the head left: every rank up to the new head is gone
            del self._gone[: bisect.bisect_left(self._gone, head)]
            self._front = head - 1
        else:
            bisect.insort(self._gone, rank)

    def position(self, job: InferenceJob) -> int:
        entry = self.jobs.get(job)
        if entry is None:
            return 0
        rank = entry[1]
        return rank - self._front - bisect.bisect_left(self._gone, rank)

    def head(self) -> tuple[InferenceJob, int] | None:
        """The oldest job and its order in the pool."""
        for job, (order, _) in self.jobs.items():
            return job, order
        return None


class _PoolQueue:
    """One pool's waiting jobs: a line per kind, and one order across both kinds."""

    def __init__(self) -> None:
        self.lines = {False: _Line(), True: _Line()}  # by wants_embeddings
        self._front = 0
        self._back = 0

    def __len__(self) -> int:
        return len(self.lines[False].jobs) + len(self.lines[True].jobs)

    def push(self, job: InferenceJob) -> None:
        self._back += 1
        self.lines[job.wants_embeddings].push(job, self._back)

    def push_front(self, job: InferenceJob) -> None:
        self.lines[job.wants_embeddings].push_front(job, self._front)
        self._front -= 1

    def first(self, *, embeddings: bool) -> InferenceJob | None:
        heads = [self.lines[False].head()] + ([self.lines[True].head()] if embeddings else [])
        present = [head for head in heads if head is not None]
        return min(present, key=lambda head: head[1])[0] if present else None

    def __iter__(self) -> Iterator[InferenceJob]:
        entries = [*self.lines[False].jobs.items(), *self.lines[True].jobs.items()]
        return iter(job for job, _ in sorted(entries, key=lambda entry: entry[1][0]))


class Buffer:
    def __init__(self) -> None:
        self._queues: dict[str, _PoolQueue] = {}

    def append(self, job: InferenceJob) -> None:
        job.queued_at = time.monotonic()
        self._queue(job.pool).push(job)

    def put_back(self, job: InferenceJob) -> None:
        """``job`` was sent to an agent that will not answer it: it goes first again."""
        job.queued_at = time.monotonic()
        self._queue(job.pool).push_front(job)

    def remove(self, job: InferenceJob) -> None:
        queue = self._queues[job.pool]
        queue.lines[job.wants_embeddings].remove(job)
        if not len(queue):
            del self._queues[job.pool]

    def first(self, pool: str, *, embeddings: bool = True) -> InferenceJob | None:
        """The oldest job of ``pool`` (of generation jobs only, unless ``embeddings``)."""
        queue = self._queues.get(pool)
        return None if queue is None else queue.first(embeddings=embeddings)

    def waiting(self, pool: str) -> list[InferenceJob]:
        """The jobs of ``pool`` waiting for a slot, oldest first."""
        return list(self._queues.get(pool, ()))

    def waiting_like(self, job: InferenceJob) -> list[InferenceJob]:
        """The waiting jobs of ``job``'s pool that the same agents could serve, oldest first."""
        queue = self._queues.get(job.pool)
        return [] if queue is None else list(queue.lines[job.wants_embeddings].jobs)

    def count_like(self, job: InferenceJob) -> int:
        """How many jobs ``waiting_like`` would list."""
        queue = self._queues.get(job.pool)
        return 0 if queue is None else len(queue.lines[job.wants_embeddings].jobs)

    def position(self, job: InferenceJob) -> int:
        """1-based place of a waiting job among its pool's jobs of its kind (0: not waiting)."""
        queue = self._queues.get(job.pool)
        return 0 if queue is None else queue.lines[job.wants_embeddings].position(job)

    def count(self, pool: str) -> int:
        queue = self._queues.get(pool)
        return 0 if queue is None else len(queue)

    def _queue(self, pool: str) -> _PoolQueue:
        queue = self._queues.get(pool)
        if queue is None:
            queue = self._queues[pool] = _PoolQueue()
        return queue
