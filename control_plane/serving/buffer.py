"""The jobs waiting for a slot, per pool, in the order they are to be served.

Embedding jobs can only go to agents that serve embeddings, so they wait in a line of their
own: a buffer full of one kind never turns the other away. In each line:

1. a job put back (its agent never started it) goes before all others, the latest first;
2. then the higher priority class (the sender's: high, normal, low) goes first;
3. within a class the keys share the slots fairly, by tokens and weight (see fair_share.py);
4. within a key, and at equal tags, the job that came first goes first.

Across the two lines of a pool (when an agent could take either) a put-back job goes first,
then the higher class, then the job that came first. Jobs all sent without a key (or with the
same one, at one priority) are thus served oldest first.

Thousands of jobs may wait, and each asks for its place every few seconds, so no operation
walks a line: a job joins or leaves it and its place is known in O(log n). A line that empties
starts afresh and a pool whose lines are empty is dropped, so that the memory of a long queue
is given back.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator
from typing import NamedTuple

from sortedcontainers import SortedList

from control_plane.serving.fair_share import FairShare
from control_plane.serving.jobs import InferenceJob

PUT_BACK, WAITING = 0, 1


class _Place(NamedTuple):
    """Where a job waits: lines are ordered by these fields, in this order."""

    band: int  # PUT_BACK or WAITING
    priority: int  # 0 for every put-back job
    start: float  # the fair share's start tag (0.0 for a put-back job)
    arrival: int  # in the pool, across both lines; negative for put-back jobs, latest lowest
    job: InferenceJob  # never compared: ``arrival`` is unique in a pool


def _across_lines(place: _Place) -> tuple[int, int, int]:
    return place.band, place.priority, place.arrival


class _Line:
    """The waiting jobs of one kind in one pool, in the order they are to be served."""

    def __init__(self) -> None:
        self._start()

    def _start(self) -> None:
        self._order: SortedList[_Place] = SortedList()
        self._places: dict[InferenceJob, tuple[_Place, float]] = {}  # and the finish tag
        self._shares: dict[int, FairShare] = {}  # by priority class
        self._known: dict[InferenceJob, int] = {}  # positions asked for since the last change

    def __len__(self) -> int:
        return len(self._places)

    def __iter__(self) -> Iterator[_Place]:
        return iter(self._order)

    def push(self, job: InferenceJob, arrival: int) -> None:
        priority = job.sender.priority
        share = self._shares.get(priority)
        if share is None:
            share = self._shares[priority] = FairShare()
        weight = job.sender.weight if job.sender.weight > 0 else 1.0
        start, finish = share.arrive(job.sender.key, max(job.estimated_tokens, 1) / weight)
        self._add(_Place(WAITING, priority, start, arrival, job), finish)

    def push_front(self, job: InferenceJob, arrival: int) -> None:
        self._add(_Place(PUT_BACK, 0, 0.0, arrival, job), 0.0)

    def _add(self, place: _Place, finish: float) -> None:
        self._order.add(place)
        self._places[place.job] = (place, finish)
        if self._known:
            self._known = {}

    def remove(self, job: InferenceJob) -> None:
        """``job`` leaves: served, or given up on if it is withdrawn."""
        place, finish = self._places.pop(job)
        self._order.remove(place)
        if self._known:
            self._known = {}
        if place.band == WAITING:
            share = self._shares[place.priority]
            share.leave(job.sender.key, place.start, finish, served=not job.withdrawn)
        if not self._places:
            self._start()  # drained: afresh, small again (a dict never shrinks)

    def position(self, job: InferenceJob) -> int:
        """Known at once while nobody joined or left since it was last asked (a line that
        only waits answers every report that way)."""
        known = self._known.get(job)
        if known is not None:
            return known
        entry = self._places.get(job)
        if entry is None:
            return 0
        found = self._known[job] = self._order.index(entry[0]) + 1
        return found

    def head(self) -> _Place | None:
        return self._order[0] if self._order else None

    def jobs(self) -> list[InferenceJob]:
        return [place.job for place in self._order]


class _PoolQueue:
    """One pool's waiting jobs: a line per kind, and one arrival count across both kinds."""

    def __init__(self) -> None:
        self.lines = {False: _Line(), True: _Line()}  # by wants_embeddings
        self._front = 0
        self._back = 0

    def __len__(self) -> int:
        return len(self.lines[False]) + len(self.lines[True])

    def push(self, job: InferenceJob) -> None:
        self._back += 1
        self.lines[job.wants_embeddings].push(job, self._back)

    def push_front(self, job: InferenceJob) -> None:
        self.lines[job.wants_embeddings].push_front(job, self._front)
        self._front -= 1

    def first(self, *, embeddings: bool) -> InferenceJob | None:
        heads = [self.lines[False].head()] + ([self.lines[True].head()] if embeddings else [])
        present = [head for head in heads if head is not None]
        return min(present, key=_across_lines).job if present else None

    def __iter__(self) -> Iterator[InferenceJob]:
        merged = heapq.merge(self.lines[False], self.lines[True], key=_across_lines)
        return (place.job for place in merged)


class Buffer:
    def __init__(self) -> None:
        self._queues: dict[str, _PoolQueue] = {}
        self._by_key: dict[str, int] = {}  # jobs waiting per key, in all pools

    def append(self, job: InferenceJob) -> None:
        job.queued_at = time.monotonic()
        self._queue(job.pool).push(job)
        self._count_in(job)

    def put_back(self, job: InferenceJob) -> None:
        """``job`` was sent to an agent that will not answer it: it goes first again."""
        job.queued_at = time.monotonic()
        self._queue(job.pool).push_front(job)
        self._count_in(job)

    def remove(self, job: InferenceJob) -> None:
        """``job`` leaves the buffer: dispatched, or given up on if it is withdrawn (then its
        key is not charged for it, as far as the fair shares can tell)."""
        queue = self._queues[job.pool]
        queue.lines[job.wants_embeddings].remove(job)
        if not len(queue):
            del self._queues[job.pool]
        key = job.sender.key
        left = self._by_key[key] - 1
        if left:
            self._by_key[key] = left
        else:
            del self._by_key[key]

    def first(self, pool: str, *, embeddings: bool = True) -> InferenceJob | None:
        """The next job of ``pool`` (of generation jobs only, unless ``embeddings``)."""
        queue = self._queues.get(pool)
        return None if queue is None else queue.first(embeddings=embeddings)

    def waiting(self, pool: str) -> list[InferenceJob]:
        """The jobs of ``pool`` waiting for a slot, in the order they are to be served."""
        return list(self._queues.get(pool, ()))

    def waiting_like(self, job: InferenceJob) -> list[InferenceJob]:
        """The waiting jobs of ``job``'s pool that the same agents could serve, in order."""
        queue = self._queues.get(job.pool)
        return [] if queue is None else queue.lines[job.wants_embeddings].jobs()

    def count_like(self, job: InferenceJob) -> int:
        """How many jobs ``waiting_like`` would list."""
        queue = self._queues.get(job.pool)
        return 0 if queue is None else len(queue.lines[job.wants_embeddings])

    def count_of_key(self, key: str) -> int:
        """How many jobs sent with the API key named ``key`` wait, in all pools."""
        return self._by_key.get(key, 0)

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

    def _count_in(self, job: InferenceJob) -> None:
        self._by_key[job.sender.key] = self._by_key.get(job.sender.key, 0) + 1
