"""The agent's outgoing messages as frames: ``Token`` pieces that are ready together travel in
one ``Tokens`` frame, so that a decode step of many slots costs the control plane one frame."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from paddler import protocol


def token_batches(messages: Sequence[protocol.Message], max_frame_bytes: int) -> Iterator[str]:
    """Encode ``messages`` in order, each run of ``Token`` pieces as ``Tokens`` frames no
    larger than ``max_frame_bytes`` (a piece too large alone goes as it is: the control plane
    refuses it as it would have anyway)."""
    run: list[protocol.Token] = []
    for message in messages:
        if isinstance(message, protocol.Token):
            run.append(message)
            continue
        if run:
            yield from _batches(run, max_frame_bytes)
            run = []
        yield protocol.encode(message)
    if run:
        yield from _batches(run, max_frame_bytes)


def _batches(pieces: list[protocol.Token], max_frame_bytes: int) -> Iterator[str]:
    if len(pieces) == 1:
        yield protocol.encode(pieces[0])
        return
    frame = protocol.encode(protocol.Tokens(pieces=tuple(pieces)))
    if len(frame.encode()) <= max_frame_bytes:
        yield frame
        return
    half = len(pieces) // 2
    yield from _batches(pieces[:half], max_frame_bytes)
    yield from _batches(pieces[half:], max_frame_bytes)
