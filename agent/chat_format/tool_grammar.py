"""GBNF for tool calls: one rule per function, its arguments held to the function's schema.

Formats put these rules inside their own call syntax (see :class:`ToolGrammar`); a schema
the converter cannot turn into a grammar is the request's fault (:class:`ToolsError`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llama_cpp.llama_grammar import SchemaConverter

from paddler.protocol import INVALID_TOOLS, FunctionTool

__all__ = ["ToolGrammar", "ToolsError", "call_rules", "literal", "root_rules"]

# whitespace between a call's parts: bounded, so a constrained model cannot run away in it
WHITESPACE_RULE = "ws ::= [ \\t\\n]{0,8}"
# a thought before the calls: anything but its closing tag, then the tag
_THOUGHT_BODY = (
    '( [^<] | "<" [^/] | "</" [^t] | "</t" [^h] | "</th" [^i] | "</thi" [^n] '
    '| "</thin" [^k] | "</think" [^>] )*'
)


class ToolsError(Exception):
    """A tool definition the agent cannot serve (``param`` names the field)."""

    code = INVALID_TOOLS

    def __init__(self, message: str, *, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class ToolGrammar:
    """A grammar for a request's output; ``triggers`` (regular expressions, as llama.cpp's
    lazy grammars take them) delay it until the output matches one, from where it applies.
    No triggers: it applies from the first token."""

    text: str
    triggers: tuple[str, ...] = ()


def literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


def call_rules(tools: Sequence[FunctionTool], *, arguments_key: str = "arguments") -> str:
    """Rules whose ``call`` is one ``{"name": ..., "<arguments_key>": {...}}`` object for any
    of ``tools``; also defines ``ws``."""
    converter: Any = SchemaConverter(  # type: ignore[no-untyped-call]
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
    )
    calls: list[str] = []
    for index, tool in enumerate(tools):
        param = f"tools[{index}].function.parameters"
        try:
            schema = converter.resolve_refs(copy.deepcopy(tool.parameters), param)
            arguments = converter.visit(schema, f"tool{index}-arguments")
        except Exception as error:  # the converter raises whatever a bad schema makes it meet
            raise ToolsError(
                f"{param} cannot be turned into a grammar: {error}", param=param
            ) from error
        calls.append(
            f'call{index} ::= "{{" ws {literal(json.dumps("name"))} ws ":" ws '
            f'{literal(json.dumps(tool.name))} ws "," ws '
            f'{literal(json.dumps(arguments_key))} ws ":" ws {arguments} ws "}}"'
        )
    choices = " | ".join(f"call{index}" for index in range(len(tools)))
    return "\n".join(
        [
            converter.format_grammar(),
            *calls,
            f"call ::= {choices}",
            WHITESPACE_RULE,
        ]
    )


def root_rules(body: str, *, thinks: bool, opens_thought: bool) -> str:
    """``root`` for a grammar that applies from the first token: ``body``, after the model's
    ``<think>...</think>`` when it thinks (already open when the generation prompt opened it,
    otherwise optional)."""
    if not thinks:
        return f"root ::= {body}"
    opening = "" if opens_thought else '"<think>" '
    thought = f'{opening}{_THOUGHT_BODY} "</think>" ws'
    if not opens_thought:
        thought = f"( {thought} )?"
    return f"thought ::= {thought}\nroot ::= thought {body}"
