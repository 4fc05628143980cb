"""A llama.cpp sampler chain built from one request's sampling parameters."""

from __future__ import annotations

import ctypes
import json
from typing import Any

import llama_cpp
import numpy
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from agent.chat_format import ToolGrammar
from agent.engine.errors import EngineError
from paddler.protocol import (
    INVALID_GRAMMAR,
    INVALID_JSON_SCHEMA,
    INVALID_LOGIT_BIAS,
    INVALID_TOOLS,
    SamplingParams,
)

__all__ = ["Sampler", "grammar_for"]

RANDOM_SEED = llama_cpp.LLAMA_DEFAULT_SEED  # asks llama.cpp to draw a seed of its own
PENALTY_WINDOW = 64  # recent tokens the repeat/presence/frequency penalties look at


def grammar_for(sampling: SamplingParams) -> str | None:
    """The GBNF grammar that constrains this request's output, if any."""
    if sampling.grammar is not None:
        return sampling.grammar
    response_format = sampling.response_format
    if response_format is None:
        return None
    if response_format.type == "json_object" or not response_format.json_schema:
        return JSON_GBNF
    try:
        return str(json_schema_to_gbnf(json.dumps(response_format.json_schema)))
    except Exception as error:  # the converter raises whatever it meets in a bad schema
        raise EngineError(
            INVALID_JSON_SCHEMA, f"The JSON schema cannot be turned into a grammar: {error}"
        ) from error


class Sampler:
    """Turns one sequence's logits into its next token.

    The chain follows llama.cpp's usual order: logit bias, grammar, penalties, then either
    greedy choice (temperature 0) or top-k, top-p, min-p, temperature and a seeded draw.
    """

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
        grammar = None if tool_grammar is not None else grammar_for(sampling)
        # Plain greedy needs no chain: an argmax over the logits is many times cheaper than
        # llama.cpp's candidate list of the whole vocabulary, and picks the same token.
        if (
            sampling.temperature <= 0
            and grammar is None
            and tool_grammar is None
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
            self._build(sampling, grammar, tool_grammar, vocab, n_vocab)
        except BaseException:
            self.close()
            raise

    def _build(
        self,
        sampling: SamplingParams,
        grammar: str | None,
        tool_grammar: ToolGrammar | None,
        vocab: Any,
        n_vocab: int,
    ) -> None:
        if sampling.logit_bias:
            self._add(_logit_bias(sampling.logit_bias, n_vocab))
        if tool_grammar is not None:
            self._add(_tool_grammar(tool_grammar, vocab))
        elif grammar is not None:
            sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
            if not sampler:
                code = INVALID_GRAMMAR if sampling.grammar is not None else INVALID_JSON_SCHEMA
                raise EngineError(code, "The grammar does not parse as GBNF.")
            self._add(sampler)
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
            logits = llama_cpp.llama_get_logits_ith(context, index)
            return int(numpy.ctypeslib.as_array(logits, shape=(self._n_vocab,)).argmax())
        return int(llama_cpp.llama_sampler_sample(self._chain, context, index))

    def close(self) -> None:
        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None


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


def _tool_grammar(grammar: ToolGrammar, vocab: Any) -> Any:
    """The tools' grammar sampler: lazy (waiting for a trigger pattern) when it has triggers."""
    if grammar.triggers:
        patterns = (ctypes.c_char_p * len(grammar.triggers))(
            *(pattern.encode() for pattern in grammar.triggers)
        )
        sampler = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
            vocab, grammar.text.encode(), b"root", patterns, len(grammar.triggers), None, 0
        )
    else:
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.text.encode(), b"root")
    if not sampler:
        raise EngineError(INVALID_TOOLS, "The tools' grammar does not parse as GBNF.")
    return sampler
