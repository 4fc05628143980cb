"""Inputs that could crash or wedge an agent, refused at parse time with a 400.

A lone surrogate cannot be encoded for the agent at all; a JSON schema nested too deep
overflows serialisation and the grammar converter (and a remote ``$ref`` makes the agent fetch
it); GBNF nested too deep overflows llama.cpp's recursive parser (it segfaults at ~20,000
parentheses). Each refusal names the parameter.
"""

from __future__ import annotations

import json
import re

from control_plane.errors import OpenAIError, field_path, invalid_value

MAX_JSON_SCHEMA_DEPTH = 32  # objects and arrays nested in a schema (15 nested object types)
MAX_JSON_SCHEMA_CHARS = 65_536  # a schema's length as compact JSON
MAX_SCHEMA_COUNT = 2_000  # minItems, maxLength...: llama.cpp's own limit on repetitions
MAX_GRAMMAR_CHARS = 100_000
MAX_GRAMMAR_NESTING = 1_000  # parentheses and brackets open at once in a GBNF grammar

_SURROGATE = re.compile("[\ud800-\udfff]")
_COUNT_KEYWORDS = frozenset(
    {"minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"}
)
_CLOSERS = {"(": ")", "{": "}"}  # groups and repetition counts, outside literals


def reject_lone_surrogates(body: dict[str, object]) -> None:
    """Every string of ``body`` (keys too) must be valid Unicode: ``"\\ud800"`` alone is not."""
    try:  # the common case at C speed: only a body that cannot be encoded is walked
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        return
    pending: list[tuple[tuple[int | str, ...], object]] = [((), body)]
    while pending:
        location, value = pending.pop()
        if isinstance(value, str):
            if not value.isascii() and _SURROGATE.search(value):
                raise _lone_surrogate(location)
        elif isinstance(value, dict):
            for key, item in value.items():
                if not key.isascii() and _SURROGATE.search(key):
                    raise _lone_surrogate(location)
                pending.append(((*location, key), item))
        elif isinstance(value, list):
            pending.extend(((*location, index), item) for index, item in enumerate(value))


def _lone_surrogate(location: tuple[int | str, ...]) -> OpenAIError:
    return invalid_value(
        field_path(location) or "body",
        "it holds a lone UTF-16 surrogate (such as \\ud800), which is not valid Unicode text",
    )


def check_json_schema(schema: dict[str, object], param: str) -> None:
    text = json.dumps(schema, separators=(",", ":"))
    if len(text) > MAX_JSON_SCHEMA_CHARS:
        raise invalid_value(
            param, f"the schema is {len(text)} characters long; at most {MAX_JSON_SCHEMA_CHARS}"
        )
    pending: list[tuple[int, object]] = [(1, schema)]
    while pending:
        depth, value = pending.pop()
        if isinstance(value, dict | list) and depth > MAX_JSON_SCHEMA_DEPTH:
            raise invalid_value(
                param, f"the schema nests deeper than {MAX_JSON_SCHEMA_DEPTH} objects and arrays"
            )
        if isinstance(value, dict):
            for key, item in value.items():
                if key in _COUNT_KEYWORDS and isinstance(item, int) and item > MAX_SCHEMA_COUNT:
                    raise invalid_value(
                        param, f"'{key}' is {item}; at most {MAX_SCHEMA_COUNT} is supported"
                    )
                if key == "$ref" and not (isinstance(item, str) and item.startswith("#")):
                    # the agent's converter would fetch an https:// reference itself
                    raise invalid_value(param, "only local '$ref's (starting with '#') work")
                pending.append((depth + 1, item))
        elif isinstance(value, list):
            pending.extend((depth + 1, item) for item in value)


def check_grammar(grammar: str, param: str = "grammar") -> None:
    """Size and nesting of a GBNF grammar, and its brackets balanced, outside literals."""
    if len(grammar) > MAX_GRAMMAR_CHARS:
        raise invalid_value(
            param, f"the grammar is {len(grammar)} characters long; at most {MAX_GRAMMAR_CHARS}"
        )
    closers: list[str] = []
    position = 0
    while position < len(grammar):
        char = grammar[position]
        if char == "#":  # a comment, to the end of the line
            end = grammar.find("\n", position)
            position = len(grammar) if end < 0 else end
            continue
        if char == '"':
            position = _literal_end(grammar, position, '"', param)
        elif char == "[":
            position = _literal_end(grammar, position, "]", param)
        elif char in "({":
            closers.append(_CLOSERS[char])
            if len(closers) > MAX_GRAMMAR_NESTING:
                raise invalid_value(
                    param, f"it nests more than {MAX_GRAMMAR_NESTING} parentheses or brackets"
                )
        elif char in ")}" and (not closers or closers.pop() != char):
            raise invalid_value(param, f"an unmatched {char!r} at {_where(grammar, position)}")
        position += 1
    if closers:
        raise invalid_value(param, f"{len(closers)} bracket(s) left open at the end")


def _literal_end(grammar: str, start: int, closer: str, param: str) -> int:
    """The index of the ``closer`` that ends the string or character class at ``start``."""
    position = start + 1
    while position < len(grammar):
        char = grammar[position]
        if char == "\\":
            position += 2
            continue
        if char == closer:
            return position
        position += 1
    kind = "string" if closer == '"' else "character class"
    raise invalid_value(param, f"a {kind} opened at {_where(grammar, start)} is never closed")


def _where(grammar: str, position: int) -> str:
    line = grammar.count("\n", 0, position) + 1
    column = position - (grammar.rfind("\n", 0, position) + 1) + 1
    return f"line {line}, column {column}"
