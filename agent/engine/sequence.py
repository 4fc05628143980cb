"""One request's life inside the batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.engine.detokenizer import TextStream
from agent.engine.sampler import Sampler
from paddler.protocol import FinishReason, TokenLogprob


@dataclass(frozen=True)
class Outcome:
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    first_token_at: float | None  # time.perf_counter() when the first token was sampled


@dataclass(eq=False)
class Sequence:
    """A request being served: its prompt is prefilled in chunks, then one token per step.

    ``emit`` and ``finish`` are called on the engine thread; they hand results over to the
    agent's event loop. ``finish`` gets an :class:`Outcome` or the exception that ended it.
    """

    prompt: list[int]
    max_tokens: int
    sampler: Sampler
    emit: Callable[[str], None]
    finish: Callable[[Outcome | BaseException], None]
    stop: threading.Event
    text: TextStream
    # set when the request asked for log probabilities: called with those of the tokens whose
    # text the next ``emit`` releases, just before it
    emit_logprobs: Callable[[tuple[TokenLogprob, ...]], None] | None = None
    seq_id: int = -1
    cached_tokens: int = 0
    prefilled: int = 0  # prompt tokens whose KV is in the context (reused ones included)
    next_token: int | None = None  # sampled, not yet decoded
    completion_tokens: int = 0
    first_token_at: float | None = None

    @property
    def prefilling(self) -> bool:
        return self.prefilled < len(self.prompt)

    def accept(self, piece: bytes) -> None:
        """Count a sampled token and release whatever text it completes."""
        self.completion_tokens += 1
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        if released := self.text.feed(piece):
            self.emit(released)

    def outcome(self, finish_reason: FinishReason) -> Outcome:
        return Outcome(
            finish_reason=finish_reason,
            prompt_tokens=len(self.prompt),
            completion_tokens=self.completion_tokens,
            cached_tokens=self.cached_tokens,
            first_token_at=self.first_token_at,
        )
