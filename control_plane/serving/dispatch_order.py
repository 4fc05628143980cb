"""The order in which one pump offers a pool's waiting jobs to its agents.

The buffer's order: its first job, and once that is sent, the next first one. Embedding jobs
only go to agents that serve embeddings; while none has a free slot, the generation jobs behind
them are offered. A job that waits for the agent it has affinity with (``affinity_wait``: the
agent holding its prompt, or its session's) is passed over and stays in the buffer, so it does
not hold up the jobs behind it that other agents could take now; the next pump offers it
again, and one comes when a slot frees or its wait runs out. Only a job that no agent has a
free slot for stops the pump.

From the first job passed over on, the rest are read from the buffer's list of its waiting jobs
(in the same order; a job's place does not change while others leave), taken once, skipping
those passed over. The router holds a job back only while some agent has a free slot, so that
walk happens only while the queue is short or draining.
"""

from __future__ import annotations

from collections.abc import Iterator

from control_plane.serving.balancer import NotNow
from control_plane.serving.buffer import Buffer
from control_plane.serving.jobs import InferenceJob

__all__ = ["DispatchOrder"]


class DispatchOrder:
    def __init__(self, buffer: Buffer, pool: str) -> None:
        self._buffer = buffer
        self._pool = pool
        self._embeddings = True
        self._passed: set[InferenceJob] = set()
        self._rest: Iterator[InferenceJob] | None = None

    def next(self) -> InferenceJob | None:
        """The next job to offer (None: no more). The one offered before it must have left
        the buffer, or been passed over."""
        if self._rest is None:
            if not self._passed:
                return self._buffer.first(self._pool, embeddings=self._embeddings)
            self._rest = iter(self._buffer.waiting(self._pool))
        for job in self._rest:
            if job not in self._passed and (self._embeddings or not job.wants_embeddings):
                return job
        return None

    def left_waiting(self, job: InferenceJob, why: NotNow) -> bool:
        """``job``, just offered, stays in the buffer for ``why``: may the jobs behind it still
        go? Yes if it waits for the agent it has affinity with (it is passed over, and tried
        again at the next pump: when a slot frees or its wait runs out), or if it is an
        embedding job (only generation jobs are offered from now on); no if no agent it may
        go to has a free slot."""
        if why == "affinity_wait":
            self._passed.add(job)
            return True
        if job.wants_embeddings:
            self._embeddings = False
            return True
        return False
