"""The grammar a request's output must follow, kept apart from the rest of the sampler chain.

Checking a grammar against every token of the vocabulary at every step is what makes
constrained decoding slow (tens of milliseconds for a 49k vocabulary). So, as llama.cpp's own
sampler does, the sampler picks a token without the grammar and asks the grammar about that
one token only; the whole vocabulary is masked only when the grammar turns the pick down.
"""

from __future__ import annotations

import ctypes
import json
import math
from typing import Any

import llama_cpp
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from agent.chat_format import ToolGrammar
from agent.engine.errors import EngineError
from paddler.protocol import INVALID_GRAMMAR, INVALID_JSON_SCHEMA, INVALID_TOOLS, SamplingParams

__all__ = ["Grammar", "grammar_for"]


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


class Grammar:
    """One request's grammar sampler: it checks a token, masks candidates and advances.

    A lazy grammar (a tool grammar with trigger patterns) allows anything until the output
    matches a trigger, and constrains what follows.
    """

    def __init__(self, sampler: Any) -> None:
        self._sampler = sampler
        self._token: Any = llama_cpp.llama_token_data()  # (its stubs type id as c_int32)
        self._single = llama_cpp.llama_token_data_array(ctypes.pointer(self._token), 1, -1, False)

    @classmethod
    def of(
        cls, sampling: SamplingParams, tool_grammar: ToolGrammar | None, vocab: Any
    ) -> Grammar | None:
        """The grammar of a request (``tool_grammar``, when given, replaces its own), if any."""
        if tool_grammar is not None:
            return cls(_tool_sampler(tool_grammar, vocab))
        text = grammar_for(sampling)
        if text is None:
            return None
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, text.encode(), b"root")
        if not sampler:
            code = INVALID_GRAMMAR if sampling.grammar is not None else INVALID_JSON_SCHEMA
            raise EngineError(code, "The grammar does not parse as GBNF.")
        return cls(sampler)

    def allows(self, token: int) -> bool:
        """Whether the grammar lets ``token`` come next."""
        self._token.id = token
        self._token.logit = 1.0
        self._single.size = 1
        self._single.selected = -1
        llama_cpp.llama_sampler_apply(self._sampler, ctypes.byref(self._single))
        return bool(self._token.logit != -math.inf)

    def mask(self, candidates: Any) -> None:
        """Set the logit of every candidate the grammar does not allow to -inf."""
        llama_cpp.llama_sampler_apply(self._sampler, candidates)

    def accept(self, token: int) -> None:
        """Advance past ``token``, which must be one the grammar allows."""
        llama_cpp.llama_sampler_accept(self._sampler, token)

    def close(self) -> None:
        if self._sampler is not None:
            llama_cpp.llama_sampler_free(self._sampler)
            self._sampler = None


def _tool_sampler(grammar: ToolGrammar, vocab: Any) -> Any:
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
