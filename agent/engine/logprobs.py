"""Log probabilities of sampled tokens, and holding them until their text is released.

What is reported is the model's own distribution at each step: a log-softmax of the raw
logits at the token's batch index, copied before the sampler runs, so before logit bias,
grammar, penalties, temperature and truncation. That is what OpenAI's API reports and what
llama-server reports by default (it answers ``n_probs`` from the raw logits; only a request
with ``post_sampling_probs`` gets the sampler's candidates instead). So a grammar or a high
temperature can pick a token that is unlikely here, or absent from the top alternatives.

A token's ``token`` text is the whole characters among its bytes (as llama-server gives it):
a byte-fallback token holding part of a character has none, and ``bytes`` keeps the exact
bytes so clients can join them.

A token is reported with the first release of text that includes some of its text (or, for
a token whose bytes finished no character yet, the text after it), just before that text;
tokens none of whose text is ever released (a stop string and what follows) never are.
"""

from __future__ import annotations

import collections
from typing import Any

import llama_cpp
import numpy
import numpy.typing as npt

from agent.engine.model import Model
from paddler.protocol import TokenLogprob, TopLogprob

__all__ = ["Distribution", "LogprobRecorder"]

# OpenAI's figure for a token the model gives no chance; JSON has no -Infinity
LOWEST_LOGPROB = -9999.0


class Distribution:
    """The log probabilities of every token at one step, and the ``top`` most likely."""

    def __init__(self, logprobs: npt.NDArray[numpy.float64], top: tuple[TopLogprob, ...]):
        self._logprobs = logprobs
        self.top = top

    def report(self, token: int, piece: bytes) -> TokenLogprob:
        """What is reported for ``token`` (whose bytes are ``piece``) sampled at this step."""
        return TokenLogprob(
            token=_text(piece),
            logprob=_finite(self._logprobs[token]),
            bytes=tuple(piece),
            top_logprobs=self.top,
        )


class LogprobRecorder:
    """One sequence's log probabilities: read at each step, held until their text goes out."""

    def __init__(self, model: Model, top: int) -> None:
        self._model = model
        self._top = min(top, model.n_vocab)
        self._held: collections.deque[tuple[int, TokenLogprob]] = collections.deque()
        self._decoded = 0  # characters the sequence's tokens have made so far
        self._released = 0  # of those, how many have been released

    def read(self, context: Any, index: int) -> Distribution:
        """The distribution at ``index`` of the last decoded batch; call before sampling."""
        raw = llama_cpp.llama_get_logits_ith(context, index)
        logprobs = numpy.ctypeslib.as_array(raw, shape=(self._model.n_vocab,)).astype(numpy.float64)
        logprobs -= logprobs.max()
        logprobs -= numpy.log(numpy.exp(logprobs).sum())
        return Distribution(logprobs, self._alternatives(logprobs))

    def _alternatives(self, logprobs: npt.NDArray[numpy.float64]) -> tuple[TopLogprob, ...]:
        if not self._top:
            return ()
        size = len(logprobs)
        candidates = numpy.argpartition(logprobs, size - self._top)[size - self._top :]
        # most likely first; among equals the lowest id, as an argmax picks
        ordered = candidates[numpy.lexsort((candidates, -logprobs[candidates]))]
        alternatives = []
        for token in ordered.tolist():
            piece = self._model.piece(token)
            alternatives.append(
                TopLogprob(token=_text(piece), logprob=_finite(logprobs[token]), bytes=tuple(piece))
            )
        return tuple(alternatives)

    def hold(self, logprob: TokenLogprob, decoded: int, released: int) -> tuple[TokenLogprob, ...]:
        """Hold a token whose bytes finished ``decoded`` characters, now that ``released``
        more characters go out; returns the held tokens that go out with them."""
        self._held.append((self._decoded, logprob))
        self._decoded += decoded
        self._released += released
        out = []
        while self._held and self._held[0][0] < self._released:
            out.append(self._held.popleft()[1])
        return tuple(out)

    def release_rest(self) -> tuple[TokenLogprob, ...]:
        """Every token still held: the stream ended and all its text went out."""
        out = tuple(logprob for _, logprob in self._held)
        self._held.clear()
        return out


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", errors="ignore")


def _finite(logprob: numpy.float64) -> float:
    return max(float(logprob), LOWEST_LOGPROB)
