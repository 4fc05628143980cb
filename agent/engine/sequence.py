"""One request's life inside the batch."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.engine.detokenizer import TextStream
from agent.engine.logprobs import LogprobRecorder
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
    # set when the caller listens for log probabilities: called with those of the tokens whose
    # text the next ``emit`` releases, just before it
    emit_logprobs: Callable[[tuple[TokenLogprob, ...]], None] | None = None
    # set when, besides, the request asked for them (None: no work per token)
    logprobs: LogprobRecorder | None = None
    # control tokens whose own text the output parser needs (tool-call markers such as
    # Llama 3.x's <|python_tag|>); any other control token adds no text
    preserved_tokens: frozenset[int] = frozenset()
    prefixes: tuple[str, ...] = ()  # its prefix hashes, which its slot holds after it
    seq_id: int = -1
    cached_tokens: int = 0
    prefilled: int = 0  # prompt tokens whose KV is in the context (reused ones included)
    next_token: int | None = None  # sampled, not yet decoded
    completion_tokens: int = 0
    first_token_at: float | None = None

    @property
    def prefilling(self) -> bool:
        return self.prefilled < len(self.prompt)

    def accept(self, piece: bytes, logprob: TokenLogprob | None = None) -> None:
        """Count a sampled token and release whatever text it completes, with the log
        probabilities of the tokens that text came from (``logprob`` is this one's)."""
        self.completion_tokens += 1
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        if logprob is None or self.logprobs is None:
            if released := self.text.feed(piece):
                self.emit(released)
            return
        released, decoded = self.text.feed_measured(piece)
        self._release(released, self.logprobs.hold(logprob, decoded, len(released)))

    def release_rest(self) -> None:
        """The stream ended: release the text held back, and its tokens' log probabilities."""
        released = self.text.finish()
        logprobs: tuple[TokenLogprob, ...] = ()
        if self.logprobs is not None and not self.text.stopped:
            logprobs = self.logprobs.release_rest()
        self._release(released, logprobs)

    def _release(self, text: str, logprobs: tuple[TokenLogprob, ...]) -> None:
        if logprobs and self.emit_logprobs is not None:
            self.emit_logprobs(logprobs)
        if text:
            self.emit(text)

    def outcome(self, finish_reason: FinishReason) -> Outcome:
        return Outcome(
            finish_reason=finish_reason,
            prompt_tokens=len(self.prompt),
            completion_tokens=self.completion_tokens,
            cached_tokens=self.cached_tokens,
            first_token_at=self.first_token_at,
        )
