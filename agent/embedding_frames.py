"""An embedding job's answer as frames no larger than the control plane accepts."""

from __future__ import annotations

from collections.abc import Sequence

from paddler import protocol

__all__ = ["embedding_frames", "vectors_per_frame"]

# The most a vector can take in a frame's JSON: every value at most 23 characters (a float32
# printed as the shortest double that reads back, e.g. -1.2345678901234567e-05) and a comma,
# then the brackets and comma around the vector.
_BYTES_PER_VALUE = 24
_BYTES_PER_VECTOR = 3
_FRAME_OVERHEAD = 1024  # the type, the protocol version, the job id and the counts


def vectors_per_frame(dimensions: int, max_frame_bytes: int) -> int:
    """How many vectors of ``dimensions`` values surely fit one frame (at least one)."""
    room = max_frame_bytes - _FRAME_OVERHEAD
    return max(1, room // (dimensions * _BYTES_PER_VALUE + _BYTES_PER_VECTOR))


def embedding_frames(
    job_id: str,
    vectors: Sequence[Sequence[float]],
    prompt_tokens: int,
    max_frame_bytes: int,
) -> list[protocol.EmbeddingsPart | protocol.Embeddings]:
    """``vectors`` in order: parts for all but the last chunk, which the ``Embeddings`` holds."""
    dimensions = len(vectors[0]) if vectors else 0
    size = vectors_per_frame(dimensions, max_frame_bytes)
    chunks = [
        tuple(tuple(vector) for vector in vectors[start : start + size])
        for start in range(0, len(vectors), size)
    ] or [()]
    frames: list[protocol.EmbeddingsPart | protocol.Embeddings] = [
        protocol.EmbeddingsPart(job_id=job_id, first_index=number * size, vectors=chunk)
        for number, chunk in enumerate(chunks[:-1])
    ]
    frames.append(
        protocol.Embeddings(job_id=job_id, vectors=chunks[-1], prompt_tokens=prompt_tokens)
    )
    return frames
