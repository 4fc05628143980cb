"""Inputs that could crash or wedge an agent are 400s at parse time, naming the parameter:
lone surrogates in any text, JSON schemas and GBNF grammars past their depth or size bounds,
and ``logit_bias`` keys no token id can have."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.engine.errors import EngineError
from agent.engine.sampler import grammar_for
from control_plane.errors import OpenAIError
from control_plane.inference.chat_requests import parse_chat_completion, parse_completion
from control_plane.inference.embedding_requests import parse_embeddings
from control_plane.inference.input_bounds import (
    MAX_GRAMMAR_CHARS,
    MAX_GRAMMAR_NESTING,
    MAX_JSON_SCHEMA_DEPTH,
)
from control_plane.serving_errors import agent_error
from paddler.protocol import INVALID_GRAMMAR, INVALID_JSON_SCHEMA, ResponseFormat, SamplingParams

LONE = "hi \ud800 there"
MESSAGES = [{"role": "user", "content": "Hi"}]


def chat(**fields: Any) -> str:
    return json.dumps({"model": "m", "messages": MESSAGES, **fields})  # escapes as \ud800


def completion(**fields: Any) -> str:
    return json.dumps({"model": "m", "prompt": "Hi", **fields})


def refused(parse: Any, body: str) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        parse(body)
    assert caught.value.status == 400, caught.value.body()
    return caught.value


@pytest.mark.parametrize(
    ("parse", "body", "param"),
    [
        (
            parse_chat_completion,
            chat(messages=[{"role": "user", "content": LONE}]),
            "messages[0].content",
        ),
        (
            parse_chat_completion,
            chat(messages=[{"role": "user", "content": [{"type": "text", "text": LONE}]}]),
            "messages[0].content[0].text",
        ),
        (parse_chat_completion, chat(stop=["ok", LONE]), "stop[1]"),
        (parse_chat_completion, chat(user=LONE), "user"),
        (parse_chat_completion, chat(grammar=f'root ::= "{LONE}"'), "grammar"),
        (parse_chat_completion, chat(metadata={LONE: "x"}), "metadata"),
        (parse_completion, completion(prompt=LONE), "prompt"),
        (parse_completion, completion(prompt=[LONE]), "prompt[0]"),
        (parse_embeddings, json.dumps({"model": "m", "input": ["a", LONE]}), "input[1]"),
    ],
)
def test_a_lone_surrogate_in_any_text_is_a_400_naming_it(parse: Any, body: str, param: str) -> None:
    assert "\\ud800" in body
    error = refused(parse, body)
    assert error.param == param and "surrogate" in error.message


def test_a_surrogate_pair_is_just_text() -> None:
    call = parse_chat_completion(chat(messages=[{"role": "user", "content": "smile \U0001f600"}]))
    assert call.request.messages[0].content == "smile \U0001f600"


def nested_schema(depth: int) -> dict[str, Any]:
    """A schema of ``depth`` nested objects and arrays (each property level is two)."""
    schema: dict[str, Any] = {"type": "string"}
    for level in range(depth - 1):
        schema = {"type": "array", "items": schema} if level % 2 else {"x": schema}
    return schema


def schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}


@pytest.mark.parametrize(
    "schema",
    [
        nested_schema(MAX_JSON_SCHEMA_DEPTH + 1),
        nested_schema(450),  # ~150 object levels: it broke the agent's frames
        {"type": "object", "description": "x" * 70_000},
        {"type": "array", "items": {"type": "string"}, "minItems": 1_000_000},
        {"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}},
    ],
)
def test_a_schema_past_its_bounds_is_a_400(schema: dict[str, Any]) -> None:
    error = refused(parse_chat_completion, chat(response_format=schema_format(schema)))
    assert error.param == "response_format.json_schema.schema", error.message


def test_a_schema_within_its_bounds_passes() -> None:
    schema = nested_schema(MAX_JSON_SCHEMA_DEPTH)
    call = parse_chat_completion(chat(response_format=schema_format(schema)))
    assert call.request.sampling.response_format == ResponseFormat(
        type="json_schema", json_schema=schema
    )


@pytest.mark.parametrize(
    ("grammar", "problem"),
    [
        ("root ::= " + "(" * 20_000 + '"a"' + ")" * 20_000, "nests more than"),
        ("root ::= " + "(" * (MAX_GRAMMAR_NESTING + 1) + '"a"' + ")" * 1001, "nests more than"),
        ('root ::= "a"' + " " * MAX_GRAMMAR_CHARS, "characters long"),
        ('root ::= ("a"', "left open"),
        ('root ::= "a")', "unmatched"),
        ('root ::= "a', "never closed"),
        ("root ::= [a-z", "never closed"),
    ],
)
def test_a_grammar_past_its_bounds_is_a_400_naming_grammar(grammar: str, problem: str) -> None:
    for parse, body in ((parse_chat_completion, chat), (parse_completion, completion)):
        error = refused(parse, body(grammar=grammar))
        assert error.param == "grammar" and problem in error.message, error.message


def test_brackets_inside_literals_and_comments_do_not_count() -> None:
    deep = "(" * MAX_GRAMMAR_NESTING + '"a"' + ")" * MAX_GRAMMAR_NESTING
    grammar = f'root ::= "((\\"(" [)(\\]] {deep} # ((( unbalanced in a comment\n'
    call = parse_completion(completion(grammar=grammar))
    assert call.request.sampling.grammar == grammar


@pytest.mark.parametrize(
    ("key", "param"),
    [
        ("1" * 4_400, "logit_bias"),
        ("00000000001", "logit_bias"),
        ("2147483648", "logit_bias[2147483648]"),
    ],
)
def test_a_logit_bias_key_no_token_can_have_is_a_400(key: str, param: str) -> None:
    error = refused(parse_completion, completion(logit_bias={key: 1}))
    assert error.param == param, error.message
    accepted = parse_completion(completion(logit_bias={"2147483647": 1}))
    assert accepted.request.sampling.logit_bias == {2147483647: 1}


def test_agent_grammar_errors_name_the_parameter_the_request_used() -> None:
    with pytest.raises(EngineError) as caught:
        grammar_for(
            SamplingParams(
                response_format=ResponseFormat(type="json_schema", json_schema={"type": "nonsense"})
            )
        )
    assert caught.value.code == INVALID_JSON_SCHEMA
    assert agent_error(INVALID_JSON_SCHEMA, "bad").param == "response_format"
    assert agent_error(INVALID_GRAMMAR, "bad").param == "grammar"
    both = refused(
        parse_chat_completion, chat(grammar='root ::= "a"', response_format={"type": "json_object"})
    )
    assert both.param == "grammar"
