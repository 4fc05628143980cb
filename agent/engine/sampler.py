"""A llama.cpp sampler chain built from one request's sampling parameters."""

from __future__ import annotations

import ctypes
import math
from typing import Any, ClassVar

import llama_cpp
import numpy

from agent.chat_format import ToolGrammar
from agent.engine.errors import EngineError
from agent.engine.grammar_check import Grammar, grammar_for
from paddler.protocol import ENGINE_FAILURE, INVALID_LOGIT_BIAS, SamplingParams

__all__ = ["Sampler", "grammar_for"]

RANDOM_SEED = llama_cpp.LLAMA_DEFAULT_SEED  # asks llama.cpp to draw a seed of its own
PENALTY_WINDOW = 64  # recent tokens the repeat/presence/frequency penalties look at
# llama_token_data as numpy sees it, so a whole vocabulary of candidates is filled at once
TOKEN_DATA = numpy.dtype([("id", numpy.int32), ("logit", numpy.float32), ("p", numpy.float32)])
assert TOKEN_DATA.itemsize == ctypes.sizeof(llama_cpp.llama_token_data)


class Sampler:
    """Turns one sequence's logits into its next token.

    The chain follows llama.cpp's usual order: logit bias, penalties, then either greedy
    choice (temperature 0) or top-k, top-p, min-p, temperature and a seeded draw. A grammar
    stays out of the chain: the chain picks, the grammar checks that one token, and only if
    it refuses is the whole vocabulary masked by the grammar and run through the chain again
    (counted in ``resamples``). Either way the chosen token has the grammar's blessing, and
    greedy decoding picks what a grammar-first chain would.
    """

    # llama.cpp's grammar_first: mask the whole vocabulary at every step instead (the same
    # greedy tokens, many times slower); kept to measure the difference
    grammar_first: ClassVar[bool] = False

    def __init__(
        self,
        sampling: SamplingParams,
        *,
        vocab: Any,
        n_vocab: int,
        tool_grammar: ToolGrammar | None = None,
    ) -> None:
        """``tool_grammar``, when given, replaces the request's own grammar."""
        self._n_vocab = n_vocab
        self._chain: Any = None
        self._grammar = Grammar.of(sampling, tool_grammar, vocab)
        self._candidates: _Candidates | None = None
        self.resamples = 0
        # Plain greedy needs no chain: an argmax over the logits is many times cheaper than
        # llama.cpp's candidate list of the whole vocabulary, and picks the same token.
        if (
            sampling.temperature <= 0
            and self._grammar is None
            and not sampling.logit_bias
            and sampling.repeat_penalty == 1
            and not sampling.presence_penalty
            and not sampling.frequency_penalty
        ):
            return
        self._chain = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        try:
            self._build(sampling, n_vocab)
        except BaseException:
            self.close()
            raise
        if self._grammar is not None:
            self._candidates = _Candidates(n_vocab)

    def _build(self, sampling: SamplingParams, n_vocab: int) -> None:
        if sampling.logit_bias:
            self._add(_logit_bias(sampling.logit_bias, n_vocab))
        if sampling.repeat_penalty != 1 or sampling.presence_penalty or sampling.frequency_penalty:
            self._add(
                llama_cpp.llama_sampler_init_penalties(
                    n_vocab,
                    PENALTY_WINDOW,
                    sampling.repeat_penalty,
                    sampling.frequency_penalty,
                    sampling.presence_penalty,
                )
            )
        if sampling.temperature <= 0:
            self._add(llama_cpp.llama_sampler_init_greedy())
            return
        if sampling.top_k > 0:
            self._add(llama_cpp.llama_sampler_init_top_k(sampling.top_k))
        if sampling.top_p < 1:
            self._add(llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
        if sampling.min_p > 0:
            self._add(llama_cpp.llama_sampler_init_min_p(sampling.min_p, 1))
        self._add(llama_cpp.llama_sampler_init_temp(sampling.temperature))
        seed = RANDOM_SEED if sampling.seed is None else sampling.seed % RANDOM_SEED
        self._add(llama_cpp.llama_sampler_init_dist(seed))

    def _add(self, sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)

    def sample(self, context: Any, index: int) -> int:
        """Pick (and accept) a token from the logits at ``index`` of the last decoded batch."""
        if self._chain is None:
            return int(self._logits(context, index).argmax())
        if self._grammar is None or self._candidates is None:
            return int(llama_cpp.llama_sampler_sample(self._chain, context, index))
        logits = self._logits(context, index)
        token = None if self.grammar_first else self._pick(logits, self._candidates)
        if token is not None and not self._grammar.allows(token):
            self.resamples += 1
            token = None
        if token is None:
            token = self._pick(logits, self._candidates, self._grammar)
        self._grammar.accept(token)
        llama_cpp.llama_sampler_accept(self._chain, token)
        return token

    def _logits(self, context: Any, index: int) -> Any:
        logits = llama_cpp.llama_get_logits_ith(context, index)
        return numpy.ctypeslib.as_array(logits, shape=(self._n_vocab,))

    def _pick(self, logits: Any, candidates: _Candidates, grammar: Grammar | None = None) -> int:
        """Run the chain (after ``grammar``'s mask, if given) over every token; no accepting."""
        array = candidates.fill(logits)
        if grammar is not None:
            grammar.mask(array)
        llama_cpp.llama_sampler_apply(self._chain, array)
        selected = array.contents.selected
        chosen = array.contents.data[selected] if selected >= 0 else None
        if chosen is None or chosen.logit == -math.inf:  # never accept what the grammar refused
            raise EngineError(ENGINE_FAILURE, "The grammar allows no token here.")
        return int(chosen.id)

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None
        if self._grammar is not None:
            self._grammar.close()


class _Candidates:
    """A reusable ``llama_token_data_array`` of the whole vocabulary, filled from logits."""

    def __init__(self, n_vocab: int) -> None:
        self._data = numpy.zeros(n_vocab, TOKEN_DATA)
        self._ids = numpy.arange(n_vocab, dtype=numpy.int32)
        self._start: Any = self._data.ctypes.data_as(llama_cpp.llama_token_data_p)
        self._array = llama_cpp.llama_token_data_array()
        self._pointer = ctypes.pointer(self._array)

    def fill(self, logits: Any) -> Any:
        """Every token with its logit, unsorted and unpicked; returns the array's pointer."""
        self._data["id"] = self._ids
        self._data["logit"] = logits
        self._data["p"] = 0
        self._array.data = self._start  # samplers may have moved it
        self._array.size = len(self._data)
        self._array.selected = -1
        self._array.sorted = False
        return self._pointer


def _logit_bias(bias: dict[int, float], n_vocab: int) -> Any:
    for token in bias:
        if not 0 <= token < n_vocab:
            raise EngineError(
                INVALID_LOGIT_BIAS,
                f"logit_bias names token {token}, but the model's tokens are 0..{n_vocab - 1}.",
            )
    entries = (llama_cpp.llama_logit_bias * len(bias))()
    for entry, (token, value) in zip(entries, bias.items(), strict=True):
        entry.token = token
        entry.bias = value
    return llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(bias), entries)
