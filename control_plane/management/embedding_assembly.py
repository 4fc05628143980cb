"""Embedding answers that agents send in several frames, put back together in order."""

from __future__ import annotations

from paddler.protocol import Embeddings, EmbeddingsPart

Vector = tuple[float, ...]


class PartRefused(Exception):
    """A part that does not continue its job's answer; the answer cannot be trusted."""


class EmbeddingAssembly:
    """One connection's embedding parts, per job, until the job's ``Embeddings`` arrives."""

    def __init__(self) -> None:
        self._vectors: dict[str, list[Vector]] = {}

    def add(self, part: EmbeddingsPart, inputs: int) -> None:
        """Keep ``part`` of a job with ``inputs`` inputs; PartRefused if it does not fit."""
        vectors = self._vectors.setdefault(part.job_id, [])
        if part.first_index != len(vectors):
            self.discard(part.job_id)
            raise PartRefused(
                f"a part starting at input {part.first_index} arrived after {len(vectors)} vectors"
            )
        if len(vectors) + len(part.vectors) > inputs:
            self.discard(part.job_id)
            raise PartRefused(f"more vectors than the job's {inputs} inputs")
        vectors.extend(part.vectors)

    def complete(self, last: Embeddings) -> Embeddings:
        """The whole answer: the parts kept for the job, then ``last``'s vectors."""
        vectors = self._vectors.pop(last.job_id, None)
        if not vectors:
            return last
        return last.model_copy(update={"vectors": (*vectors, *last.vectors)})

    def discard(self, job_id: str) -> None:
        self._vectors.pop(job_id, None)
