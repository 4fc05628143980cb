from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from control_plane.errors import OpenAIError
from control_plane.inference.chat_requests import (
    InferenceCall,
    parse_chat_completion,
    parse_completion,
)
from paddler.protocol import ChatMessage, ResponseFormat, SamplingParams

Parser = Callable[[bytes], InferenceCall]

REMOVE = object()
"""Passed as an override to drop a field from the base body."""


def chat_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "llama", "messages": [{"role": "user", "content": "Hi"}]}
    return _with_overrides(body, overrides)


def completion_body(**overrides: Any) -> dict[str, Any]:
    return _with_overrides({"model": "llama", "prompt": "Once upon a time"}, overrides)


def _with_overrides(body: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for name, value in overrides.items():
        if value is REMOVE:
            body.pop(name, None)
        else:
            body[name] = value
    return body


def encode(body: object) -> bytes:
    return json.dumps(body).encode()


def rejection(parse: Parser, body: bytes) -> OpenAIError:
    with pytest.raises(OpenAIError) as raised:
        parse(body)
    error = raised.value
    assert error.status == 400
    assert error.type == "invalid_request_error"
    assert error.body()["error"]["message"] == error.message
    return error


# -- accepted requests -----------------------------------------------------------------------


def test_minimal_chat_request_gets_the_defaults() -> None:
    call = parse_chat_completion(encode(chat_body()))

    assert call.model == "llama"
    assert call.stream is False
    assert call.include_usage is False
    assert call.request.kind == "chat"
    assert call.request.messages == (ChatMessage(role="user", content="Hi"),)
    assert call.request.prompt == ""
    assert call.request.sampling == SamplingParams()
    assert call.request.sampling.temperature == 1.0
    assert call.request.sampling.top_p == 1.0
    assert call.request.sampling.max_tokens is None


def test_chat_request_with_every_sampling_parameter() -> None:
    body = chat_body(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Really brief."},
            {"role": "user", "content": "Hi", "name": "ada"},
            {
                "role": "assistant",
                "content": "Hello.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "content": "42", "tool_call_id": "call_1"},
        ],
        max_tokens=64,
        temperature=0,
        top_p=0.5,
        seed=-7,
        stop=["\n\n", "END"],
        presence_penalty=-2,
        frequency_penalty=1.5,
    )

    call = parse_chat_completion(encode(body))

    assert [(message.role, message.content) for message in call.request.messages] == [
        ("system", "Be brief."),
        ("developer", "Really brief."),
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("tool", "42"),
    ]
    assert call.request.sampling == SamplingParams(
        max_tokens=64,
        temperature=0.0,
        top_p=0.5,
        seed=-7,
        stop=("\n\n", "END"),
        presence_penalty=-2.0,
        frequency_penalty=1.5,
    )
    assert isinstance(call.request.sampling.temperature, float)


def test_text_content_parts_are_joined_with_newlines() -> None:
    content = [
        {"type": "text", "text": "First part."},
        {"type": "text", "text": "Second part.", "cache_control": {"type": "ephemeral"}},
    ]

    call = parse_chat_completion(encode(chat_body(messages=[{"role": "user", "content": content}])))

    assert call.request.messages[0].content == "First part.\nSecond part."


def test_a_stop_string_becomes_one_stop_sequence() -> None:
    call = parse_chat_completion(encode(chat_body(stop="###")))

    assert call.request.sampling.stop == ("###",)


def test_an_empty_stop_list_means_no_stop_sequences() -> None:
    call = parse_chat_completion(encode(chat_body(stop=[])))

    assert call.request.sampling.stop == ()


def test_max_completion_tokens_is_an_alias_of_max_tokens() -> None:
    alone = parse_chat_completion(encode(chat_body(max_completion_tokens=20)))
    both = parse_chat_completion(encode(chat_body(max_completion_tokens=20, max_tokens=20)))

    assert alone.request.sampling.max_tokens == 20
    assert both.request.sampling.max_tokens == 20


@pytest.mark.parametrize(
    ("overrides", "include_usage"),
    [
        ({"stream": True}, False),
        ({"stream": True, "stream_options": None}, False),
        ({"stream": True, "stream_options": {}}, False),
        ({"stream": True, "stream_options": {"include_usage": False}}, False),
        ({"stream": True, "stream_options": {"include_usage": True}}, True),
    ],
)
def test_streaming_and_usage_option(overrides: dict[str, Any], include_usage: bool) -> None:
    for parse, body in (
        (parse_chat_completion, chat_body(**overrides)),
        (parse_completion, completion_body(**overrides)),
    ):
        call = parse(encode(body))

        assert call.stream is True
        assert call.include_usage is include_usage


def test_accepted_and_ignored_chat_fields() -> None:
    body = chat_body(
        user="user-1",
        metadata={"team": "a"},
        store=False,
        parallel_tool_calls=True,
        logit_bias={},
        service_tier="auto",
        tools=[],
        tool_choice="none",
        response_format={"type": "text"},
        n=1,
        logprobs=False,
        stream=False,
    )

    call = parse_chat_completion(encode(body))

    assert call.user == "user-1"  # it names the conversation for routing (sessions)
    assert dataclasses.replace(call, user=None) == parse_chat_completion(encode(chat_body()))


def test_null_optional_fields_mean_their_defaults() -> None:
    nulls = dict.fromkeys(
        [
            "stream",
            "stream_options",
            "max_tokens",
            "max_completion_tokens",
            "temperature",
            "top_p",
            "presence_penalty",
            "frequency_penalty",
            "stop",
            "seed",
            "n",
            "user",
            "logit_bias",
            "top_k",
            "min_p",
            "repeat_penalty",
            "grammar",
            "tools",
            "functions",
            "tool_choice",
            "logprobs",
            "top_logprobs",
            "response_format",
            "metadata",
            "store",
            "service_tier",
        ]
    )

    call = parse_chat_completion(encode(chat_body(**nulls)))

    assert call == parse_chat_completion(encode(chat_body()))


def test_llama_cpp_sampling_extensions_and_constraints_reach_the_agent() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    call = parse_chat_completion(
        encode(
            chat_body(
                top_k=40,
                min_p=0.05,
                repeat_penalty=1.1,
                logit_bias={"15": 2.5, "99": -100},
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "thing", "schema": schema, "strict": True},
                },
            )
        )
    )
    sampling = call.request.sampling
    assert (sampling.top_k, sampling.min_p, sampling.repeat_penalty) == (40, 0.05, 1.1)
    assert sampling.logit_bias == {15: 2.5, 99: -100}
    assert sampling.response_format == ResponseFormat(type="json_schema", json_schema=schema)

    json_mode = parse_chat_completion(encode(chat_body(response_format={"type": "json_object"})))
    assert json_mode.request.sampling.response_format == ResponseFormat(type="json_object")

    grammar = parse_completion(encode(completion_body(grammar='root ::= "yes" | "no"')))
    assert grammar.request.sampling.grammar == 'root ::= "yes" | "no"'


def test_minimal_completion_request_gets_the_defaults() -> None:
    call = parse_completion(encode(completion_body()))

    assert call.model == "llama"
    assert call.stream is False
    assert call.include_usage is False
    assert call.request.kind == "completion"
    assert call.request.prompt == "Once upon a time"
    assert call.request.messages == ()
    assert call.request.sampling == SamplingParams()


def test_completion_request_with_parameters() -> None:
    body = completion_body(
        prompt=["def fib(n):"],
        max_tokens=16,
        temperature=0.2,
        top_p=0.9,
        stop="\n\n",
        seed=3,
        user="u",
        echo=False,
        best_of=1,
        logprobs=None,
        suffix=None,
        n=1,
    )

    call = parse_completion(encode(body))

    assert call.request.prompt == "def fib(n):"
    assert call.request.sampling == SamplingParams(
        max_tokens=16, temperature=0.2, top_p=0.9, stop=("\n\n",), seed=3
    )


# -- rejected requests -----------------------------------------------------------------------

BAD_CHAT_REQUESTS: list[Any] = [
    pytest.param({"model": REMOVE}, "model", "missing_required_parameter", id="model-missing"),
    pytest.param({"model": ""}, "model", "invalid_value", id="model-empty"),
    pytest.param({"model": 5}, "model", "invalid_type", id="model-number"),
    pytest.param({"messages": REMOVE}, "messages", "missing_required_parameter", id="no-msgs"),
    pytest.param({"messages": []}, "messages", "invalid_value", id="messages-empty"),
    pytest.param({"messages": "Hi"}, "messages", "invalid_type", id="messages-string"),
    pytest.param({"messages": ["Hi"]}, "messages[0]", "invalid_type", id="message-string"),
    pytest.param(
        {"messages": [{"content": "Hi"}]},
        "messages[0].role",
        "missing_required_parameter",
        id="role-missing",
    ),
    pytest.param(
        {"messages": [{"role": "robot", "content": "Hi"}]},
        "messages[0].role",
        "invalid_value",
        id="role-unknown",
    ),
    pytest.param(
        {"messages": [{"role": "user"}]},
        "messages[0].content",
        "missing_required_parameter",
        id="content-missing",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": None}]},
        "messages[0].content",
        "invalid_type",
        id="content-null",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": 5}]},
        "messages[0].content",
        "invalid_type",
        id="content-number",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": []}]},
        "messages[0].content",
        "invalid_value",
        id="content-empty-list",
    ),
    pytest.param(
        {
            "messages": [
                {"role": "system", "content": "Describe."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                    ],
                },
            ]
        },
        "messages[1].content[1].type",
        "unsupported_value",
        id="content-image-part",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": ["Hi"]}]},
        "messages[0].content[0]",
        "invalid_type",
        id="content-part-string",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"text": "Hi"}]}]},
        "messages[0].content[0].type",
        "missing_required_parameter",
        id="content-part-type-missing",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"type": 1, "text": "Hi"}]}]},
        "messages[0].content[0].type",
        "invalid_type",
        id="content-part-type-number",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
        "messages[0].content[0].text",
        "missing_required_parameter",
        id="content-part-text-missing",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
        "messages[0].content[0].text",
        "invalid_type",
        id="content-part-text-number",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": "Hi", "mood": "happy"}]},
        "messages[0].mood",
        "unknown_parameter",
        id="message-unknown-field",
    ),
    pytest.param(
        {"max_tokens": 10, "max_completion_tokens": 20},
        "max_completion_tokens",
        "invalid_value",
        id="max-tokens-aliases-differ",
    ),
    pytest.param(
        {"max_completion_tokens": 0},
        "max_completion_tokens",
        "invalid_value",
        id="max-completion-tokens-zero",
    ),
    pytest.param({"logprobs": 1}, "logprobs", "invalid_type", id="logprobs-number"),
    pytest.param(
        {"response_format": {"type": "json_schema"}},
        "response_format.json_schema",
        "missing_required_parameter",
        id="response-format-json-schema-missing",
    ),
    pytest.param(
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
        "response_format.json_schema.name",
        "missing_required_parameter",
        id="response-format-json-schema-unnamed",
    ),
    pytest.param(
        {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": 1}}},
        "response_format.json_schema.schema",
        "invalid_type",
        id="response-format-schema-number",
    ),
    pytest.param(
        {"response_format": {"type": "json_object"}, "grammar": 'root ::= "a"'},
        "grammar",
        "invalid_value",
        id="grammar-and-response-format",
    ),
    pytest.param({"grammar": ""}, "grammar", "invalid_value", id="grammar-empty"),
    pytest.param({"top_k": -1}, "top_k", "invalid_value", id="top-k-negative"),
    pytest.param({"min_p": 1.5}, "min_p", "invalid_value", id="min-p-above-one"),
    pytest.param({"repeat_penalty": 0}, "repeat_penalty", "invalid_value", id="repeat-zero"),
    pytest.param(
        {"response_format": {"type": "xml"}},
        "response_format.type",
        "invalid_value",
        id="response-format-unknown",
    ),
    pytest.param(
        {"response_format": "json"},
        "response_format",
        "invalid_type",
        id="response-format-string",
    ),
    pytest.param({"store": True}, "store", "unsupported_parameter", id="store"),
    pytest.param({"metadata": {"a": 1}}, "metadata.a", "invalid_type", id="metadata-number"),
    pytest.param({"prompt": "Hi"}, "prompt", "unknown_parameter", id="chat-prompt"),
]

BAD_COMPLETION_REQUESTS: list[Any] = [
    pytest.param({"model": REMOVE}, "model", "missing_required_parameter", id="model-missing"),
    pytest.param({"prompt": REMOVE}, "prompt", "missing_required_parameter", id="prompt-missing"),
    pytest.param({"prompt": ""}, "prompt", "invalid_value", id="prompt-empty"),
    pytest.param({"prompt": None}, "prompt", "invalid_type", id="prompt-null"),
    pytest.param({"prompt": 5}, "prompt", "invalid_type", id="prompt-number"),
    pytest.param({"prompt": []}, "prompt", "invalid_value", id="prompt-empty-list"),
    pytest.param({"prompt": [""]}, "prompt[0]", "invalid_value", id="prompt-list-empty-string"),
    pytest.param({"prompt": [{"a": 1}]}, "prompt[0]", "invalid_type", id="prompt-list-object"),
    pytest.param({"prompt": ["a", "b"]}, "prompt", "unsupported_value", id="prompt-batch"),
    pytest.param({"prompt": [1, 2, 3]}, "prompt", "unsupported_value", id="prompt-token-ids"),
    pytest.param({"prompt": [[1, 2]]}, "prompt", "unsupported_value", id="prompt-token-batch"),
    pytest.param({"echo": True}, "echo", "unsupported_parameter", id="echo"),
    pytest.param({"best_of": 2}, "best_of", "unsupported_value", id="best-of-2"),
    pytest.param({"best_of": 0}, "best_of", "invalid_value", id="best-of-0"),
    pytest.param({"suffix": "end"}, "suffix", "unsupported_parameter", id="suffix"),
    pytest.param({"logprobs": 6}, "logprobs", "invalid_value", id="logprobs-above-five"),
    pytest.param({"logprobs": True}, "logprobs", "invalid_type", id="logprobs-bool"),
    pytest.param({"messages": []}, "messages", "unknown_parameter", id="completion-messages"),
    pytest.param({"metadata": {}}, "metadata", "unknown_parameter", id="completion-metadata"),
]

BAD_COMMON_FIELDS: list[Any] = [
    pytest.param({"model": None}, "model", "invalid_type", id="model-null"),
    pytest.param({"stream": "yes"}, "stream", "invalid_type", id="stream-string"),
    pytest.param({"stream": 1}, "stream", "invalid_type", id="stream-number"),
    pytest.param({"n": 2}, "n", "unsupported_value", id="n-2"),
    pytest.param({"n": 0}, "n", "invalid_value", id="n-0"),
    pytest.param({"n": "1"}, "n", "invalid_type", id="n-string"),
    pytest.param({"max_tokens": 0}, "max_tokens", "invalid_value", id="max-tokens-zero"),
    pytest.param({"max_tokens": -5}, "max_tokens", "invalid_value", id="max-tokens-negative"),
    pytest.param({"max_tokens": 1.5}, "max_tokens", "invalid_type", id="max-tokens-float"),
    pytest.param({"max_tokens": True}, "max_tokens", "invalid_type", id="max-tokens-bool"),
    pytest.param({"temperature": "hot"}, "temperature", "invalid_type", id="temperature-str"),
    pytest.param({"temperature": True}, "temperature", "invalid_type", id="temperature-bool"),
    pytest.param({"temperature": 2.01}, "temperature", "invalid_value", id="temperature-high"),
    pytest.param({"temperature": -0.1}, "temperature", "invalid_value", id="temperature-low"),
    pytest.param({"top_p": 0}, "top_p", "invalid_value", id="top-p-zero"),
    pytest.param({"top_p": 1.5}, "top_p", "invalid_value", id="top-p-high"),
    pytest.param(
        {"presence_penalty": 2.5}, "presence_penalty", "invalid_value", id="presence-high"
    ),
    pytest.param(
        {"frequency_penalty": -3}, "frequency_penalty", "invalid_value", id="frequency-low"
    ),
    pytest.param({"stop": ""}, "stop", "invalid_value", id="stop-empty-string"),
    pytest.param({"stop": 5}, "stop", "invalid_type", id="stop-number"),
    pytest.param({"stop": ["a", ""]}, "stop[1]", "invalid_value", id="stop-empty-item"),
    pytest.param({"stop": ["a", 3]}, "stop[1]", "invalid_type", id="stop-number-item"),
    pytest.param({"stop": ["a", "b", "c", "d", "e"]}, "stop", "invalid_value", id="stop-5"),
    pytest.param({"seed": 1.5}, "seed", "invalid_type", id="seed-float"),
    pytest.param({"seed": "42"}, "seed", "invalid_type", id="seed-string"),
    pytest.param(
        {"stream_options": {"include_usage": True}},
        "stream_options",
        "invalid_value",
        id="stream-options-without-stream",
    ),
    pytest.param(
        {"stream": False, "stream_options": {"include_usage": True}},
        "stream_options",
        "invalid_value",
        id="stream-options-stream-false",
    ),
    pytest.param(
        {"stream": True, "stream_options": {"include_usage": "yes"}},
        "stream_options.include_usage",
        "invalid_type",
        id="stream-options-include-usage-string",
    ),
    pytest.param(
        {"stream": True, "stream_options": {"include_obfuscation": True}},
        "stream_options.include_obfuscation",
        "unknown_parameter",
        id="stream-options-unknown",
    ),
    pytest.param(
        {"stream": True, "stream_options": True},
        "stream_options",
        "invalid_type",
        id="stream-options-bool",
    ),
    pytest.param({"logit_bias": {"fifty": -100}}, "logit_bias", "invalid_value", id="lb-key"),
    pytest.param({"logit_bias": {"-3": 1}}, "logit_bias", "invalid_value", id="lb-negative"),
    pytest.param(
        {"logit_bias": {"50256": -101}}, "logit_bias[50256]", "invalid_value", id="lb-range"
    ),
    pytest.param({"logit_bias": {"7": "up"}}, "logit_bias.7", "invalid_type", id="lb-type"),
    pytest.param({"user": 7}, "user", "invalid_type", id="user-number"),
    pytest.param({"frobnicate": True}, "frobnicate", "unknown_parameter", id="unknown-field"),
]


@pytest.mark.parametrize(("overrides", "param", "code"), BAD_CHAT_REQUESTS + BAD_COMMON_FIELDS)
def test_bad_chat_requests_are_rejected(overrides: dict[str, Any], param: str, code: str) -> None:
    error = rejection(parse_chat_completion, encode(chat_body(**overrides)))

    assert (error.param, error.code) == (param, code), error.message
    assert param in error.message


@pytest.mark.parametrize(
    ("overrides", "param", "code"), BAD_COMPLETION_REQUESTS + BAD_COMMON_FIELDS
)
def test_bad_completion_requests_are_rejected(
    overrides: dict[str, Any], param: str, code: str
) -> None:
    error = rejection(parse_completion, encode(completion_body(**overrides)))

    assert (error.param, error.code) == (param, code), error.message
    assert param.split("[")[0] in error.message


@pytest.mark.parametrize("parse", [parse_chat_completion, parse_completion])
@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(b"", "invalid_json", id="empty"),
        pytest.param(b"{not json", "invalid_json", id="garbage"),
        pytest.param(b'{"model": "m",}', "invalid_json", id="trailing-comma"),
        pytest.param(b'{"model": "m", "temperature": NaN}', "invalid_json", id="nan"),
        pytest.param(b'{"model": "m", "temperature": Infinity}', "invalid_json", id="infinity"),
        pytest.param(b"\xff\xfe\xfa", "invalid_json", id="not-utf8"),
        pytest.param(b"[" * 100_000, "invalid_json", id="deeply-nested"),
        pytest.param(b"[]", "invalid_type", id="array"),
        pytest.param(b'"hello"', "invalid_type", id="string"),
        pytest.param(b"null", "invalid_type", id="null"),
    ],
)
def test_bodies_that_are_not_a_json_object_are_rejected(
    parse: Parser, body: bytes, code: str
) -> None:
    error = rejection(parse, body)

    assert error.param is None
    assert error.code == code


def test_malformed_json_message() -> None:
    error = rejection(parse_chat_completion, b"{oops")

    assert error.message.startswith("We could not parse the JSON body of your request.")


def test_a_number_too_large_to_be_finite_is_rejected() -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "Hi"}], "temperature": 1e999}'

    error = rejection(parse_chat_completion, body)

    assert (error.param, error.code) == ("temperature", "invalid_value")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"temperature": "hot"},
            "Invalid type for 'temperature': expected a number, but got a string instead.",
        ),
        (
            {"stream": 1},
            "Invalid type for 'stream': expected a boolean, but got an integer instead.",
        ),
        (
            {"temperature": 3},
            "Invalid value for 'temperature': expected a value <= 2, but got 3 instead.",
        ),
        ({"frobnicate": 1}, "Unrecognized request argument supplied: frobnicate"),
        ({"model": REMOVE}, "Missing required parameter: 'model'."),
        (
            {"messages": [{"role": "robot", "content": "Hi"}]},
            "Invalid value for 'messages[0].role': expected one of 'system', 'user', "
            "'assistant', 'developer' or 'tool', but got \"robot\" instead.",
        ),
        (
            {"logit_bias": {"50256": 200.5}},
            "Invalid value for 'logit_bias[50256]': expected a number between -100 and 100, "
            "but got 200.5 instead.",
        ),
    ],
)
def test_error_messages_are_human_readable(overrides: dict[str, Any], message: str) -> None:
    error = rejection(parse_chat_completion, encode(chat_body(**overrides)))

    assert error.message == message


def test_unknown_fields_are_reported_before_other_problems() -> None:
    body = chat_body(temperature="hot", frobnicate=True)

    error = rejection(parse_chat_completion, encode(body))

    assert (error.param, error.code) == ("frobnicate", "unknown_parameter")
