"""Tools, tool choices and tool-call conversations on ``POST /v1/chat/completions``: what is
accepted reaches the agent as protocol values; what is not is a 400 naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from control_plane.errors import OpenAIError
from control_plane.inference.chat_requests import parse_chat_completion
from control_plane.inference.tool_requests import MAX_TOOLS
from control_plane.serving_errors import agent_error
from paddler.protocol import INVALID_TOOLS, ChatMessage, FunctionChoice, FunctionTool, ToolCall

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": WEATHER_SCHEMA,
        "strict": True,
    },
}
TIME = {"type": "function", "function": {"name": "get_time"}}
CALL = {
    "id": "call_abc",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def chat(**fields: Any) -> bytes:
    body = {"model": "m", "messages": [{"role": "user", "content": "Weather in Paris?"}], **fields}
    return json.dumps(body).encode()


def loop(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    """A conversation in which the assistant called get_weather, then ``extra`` messages."""
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        *extra,
    ]


def rejection(body: bytes) -> OpenAIError:
    with pytest.raises(OpenAIError) as raised:
        parse_chat_completion(body)
    assert raised.value.status == 400
    assert raised.value.type == "invalid_request_error"
    return raised.value


def test_function_tools_reach_the_agent() -> None:
    request = parse_chat_completion(chat(tools=[WEATHER, TIME])).request

    assert request.tools == (
        FunctionTool(
            name="get_weather",
            description="The weather in a city.",
            parameters=WEATHER_SCHEMA,
            strict=True,
        ),
        FunctionTool(name="get_time", parameters={"type": "object", "properties": {}}),
    )
    assert request.tool_choice == "auto"
    assert request.parallel_tool_calls is True


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (
            {"type": "function", "function": {"name": "get_time"}},
            FunctionChoice(name="get_time"),
        ),
    ],
)
def test_tool_choices(choice: object, expected: object) -> None:
    request = parse_chat_completion(chat(tools=[WEATHER, TIME], tool_choice=choice)).request

    assert request.tool_choice == expected


def test_no_tools_means_no_tool_choice() -> None:
    request = parse_chat_completion(chat()).request

    assert (request.tools, request.tool_choice) == ((), "none")


def test_parallel_tool_calls_can_be_turned_off() -> None:
    request = parse_chat_completion(chat(tools=[WEATHER], parallel_tool_calls=False)).request

    assert request.parallel_tool_calls is False


def test_the_deprecated_functions_become_tools_with_one_call_at_most() -> None:
    request = parse_chat_completion(
        chat(functions=[WEATHER["function"]], function_call={"name": "get_weather"})
    ).request

    assert [tool.name for tool in request.tools] == ["get_weather"]
    assert request.tool_choice == FunctionChoice(name="get_weather")
    assert request.parallel_tool_calls is False
    assert parse_chat_completion(chat(functions=[WEATHER["function"]])).request.tool_choice == (
        "auto"
    )


def test_a_tool_call_loop_reaches_the_agent() -> None:
    messages = loop(
        {"role": "tool", "tool_call_id": "call_abc", "content": '{"temperature": 21}'},
    )

    request = parse_chat_completion(chat(messages=messages, tools=[WEATHER])).request

    assert request.messages[1] == ChatMessage(
        role="assistant",
        content="",
        tool_calls=(ToolCall(id="call_abc", name="get_weather", arguments='{"city": "Paris"}'),),
    )
    assert request.messages[2] == ChatMessage(
        role="tool", content='{"temperature": 21}', tool_call_id="call_abc"
    )


def test_an_assistant_message_with_calls_may_leave_out_its_content() -> None:
    messages = loop({"role": "tool", "tool_call_id": "call_abc", "content": "21"})
    del messages[1]["content"]

    request = parse_chat_completion(chat(messages=messages)).request

    assert request.messages[1].content == ""
    assert len(request.messages[1].tool_calls) == 1


def test_message_names_reach_the_agent() -> None:
    messages = [{"role": "user", "content": "Hi", "name": "ada"}]

    assert parse_chat_completion(chat(messages=messages)).request.messages[0].name == "ada"


def test_a_schema_that_makes_no_grammar_is_a_bad_request_about_tools() -> None:
    error = agent_error(INVALID_TOOLS, "the schema of get_weather makes no grammar")

    assert (error.status, error.param, error.code) == (400, "tools", "invalid_tools")


BAD_TOOL_REQUESTS: list[Any] = [
    pytest.param({"tools": {"a": 1}}, "tools", "invalid_type", id="tools-object"),
    pytest.param({"tools": ["f"]}, "tools[0]", "invalid_type", id="tool-string"),
    pytest.param(
        {"tools": [{"function": WEATHER["function"]}]},
        "tools[0].type",
        "missing_required_parameter",
        id="tool-type-missing",
    ),
    pytest.param(
        {"tools": [WEATHER, {"type": "web_search"}]},
        "tools[1].type",
        "unsupported_value",
        id="tool-type-web-search",
    ),
    pytest.param(
        {"tools": [{"type": "function"}]},
        "tools[0].function",
        "missing_required_parameter",
        id="tool-function-missing",
    ),
    pytest.param(
        {"tools": [{"type": "function", "function": "f"}]},
        "tools[0].function",
        "invalid_type",
        id="tool-function-string",
    ),
    pytest.param(
        {"tools": [{**WEATHER, "cache": True}]},
        "tools[0].cache",
        "unknown_parameter",
        id="tool-unknown-field",
    ),
    pytest.param(
        {"tools": [{"type": "function", "function": {"description": "x"}}]},
        "tools[0].function.name",
        "missing_required_parameter",
        id="function-name-missing",
    ),
    pytest.param(
        {"tools": [{"type": "function", "function": {"name": "get weather"}}]},
        "tools[0].function.name",
        "invalid_value",
        id="function-name-space",
    ),
    pytest.param(
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]},
        "tools[0].function.parameters",
        "invalid_type",
        id="function-parameters-array",
    ),
    pytest.param(
        {
            "tools": [
                {"type": "function", "function": {"name": "f", "parameters": {"$ref": "https://x"}}}
            ]
        },
        "tools[0].function.parameters",
        "invalid_value",
        id="function-parameters-remote-ref",
    ),
    pytest.param(
        {"tools": [{"type": "function", "function": {"name": "f", "strict": "yes"}}]},
        "tools[0].function.strict",
        "invalid_type",
        id="function-strict-string",
    ),
    pytest.param(
        {"tools": [{"type": "function", "function": {"name": "f", "returns": "int"}}]},
        "tools[0].function.returns",
        "unknown_parameter",
        id="function-unknown-field",
    ),
    pytest.param(
        {"tools": [WEATHER, WEATHER]},
        "tools[1].function.name",
        "invalid_value",
        id="function-twice",
    ),
    pytest.param(
        {"tools": [TIME] * (MAX_TOOLS + 1)}, "tools", "invalid_value", id="too-many-tools"
    ),
    pytest.param({"tool_choice": "auto"}, "tool_choice", "invalid_value", id="choice-no-tools"),
    pytest.param(
        {"tools": [WEATHER], "tool_choice": "any"},
        "tool_choice",
        "invalid_value",
        id="choice-unknown",
    ),
    pytest.param(
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        "tool_choice.function.name",
        "invalid_value",
        id="choice-names-no-function",
    ),
    pytest.param(
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {}}},
        "tool_choice.function.name",
        "missing_required_parameter",
        id="choice-name-missing",
    ),
    pytest.param(
        {"tools": [WEATHER], "tool_choice": {"type": "custom", "custom": {"name": "x"}}},
        "tool_choice.type",
        "invalid_value",
        id="choice-custom",
    ),
    pytest.param(
        {"tools": [WEATHER], "tool_choice": 1}, "tool_choice", "invalid_type", id="choice-number"
    ),
    pytest.param(
        {"tools": [WEATHER], "parallel_tool_calls": "no"},
        "parallel_tool_calls",
        "invalid_type",
        id="parallel-string",
    ),
    pytest.param(
        {"tools": [WEATHER], "grammar": 'root ::= "a"'},
        "grammar",
        "invalid_value",
        id="grammar-with-tools",
    ),
    pytest.param(
        {"tools": [WEATHER], "functions": [WEATHER["function"]]},
        "functions",
        "invalid_value",
        id="tools-and-functions",
    ),
    pytest.param(
        {"functions": [{"name": "f"}], "function_call": {"name": "g"}},
        "function_call.name",
        "invalid_value",
        id="function-call-names-no-function",
    ),
    pytest.param(
        {"functions": [{"name": "f"}], "function_call": "required"},
        "function_call",
        "invalid_value",
        id="function-call-required",
    ),
    pytest.param(
        {"functions": [{"name": "f bad"}]},
        "functions[0].name",
        "invalid_value",
        id="functions-name",
    ),
    pytest.param({"function_call": "auto"}, "function_call", "invalid_value", id="fc-no-funcs"),
]

BAD_CONVERSATIONS: list[Any] = [
    pytest.param(
        [{"role": "user", "content": "Hi"}, {"role": "tool", "content": "21"}],
        "messages[1].tool_call_id",
        "missing_required_parameter",
        id="tool-message-without-id",
    ),
    pytest.param(
        loop({"role": "tool", "tool_call_id": "call_other", "content": "21"}),
        "messages[2].tool_call_id",
        "invalid_value",
        id="tool-message-answers-no-call",
    ),
    pytest.param(
        [
            {"role": "tool", "tool_call_id": "call_abc", "content": "21"},
            *loop(),
        ],
        "messages[0].tool_call_id",
        "invalid_value",
        id="tool-message-before-its-call",
    ),
    pytest.param(
        [{"role": "assistant", "content": None}],
        "messages[0].content",
        "invalid_type",
        id="assistant-null-content-without-calls",
    ),
    pytest.param(
        [{"role": "user", "content": "Hi", "tool_calls": [CALL]}],
        "messages[0].tool_calls",
        "invalid_value",
        id="user-message-with-calls",
    ),
    pytest.param(
        [{"role": "assistant", "tool_calls": {"id": "x"}}],
        "messages[0].tool_calls",
        "invalid_type",
        id="calls-object",
    ),
    pytest.param(
        [{"role": "assistant", "tool_calls": [{**CALL, "id": ""}]}],
        "messages[0].tool_calls[0].id",
        "invalid_value",
        id="call-id-empty",
    ),
    pytest.param(
        [{"role": "assistant", "tool_calls": [{**CALL, "type": "custom"}]}],
        "messages[0].tool_calls[0].type",
        "invalid_value",
        id="call-type-custom",
    ),
    pytest.param(
        [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}],
        "messages[0].tool_calls[0].function",
        "missing_required_parameter",
        id="call-function-missing",
    ),
    pytest.param(
        [
            {
                "role": "assistant",
                "tool_calls": [{**CALL, "function": {"name": "f", "arguments": {"a": 1}}}],
            }
        ],
        "messages[0].tool_calls[0].function.arguments",
        "invalid_type",
        id="call-arguments-object",
    ),
    pytest.param(
        [{"role": "assistant", "tool_calls": [{**CALL, "function": {"arguments": "{}"}}]}],
        "messages[0].tool_calls[0].function.name",
        "missing_required_parameter",
        id="call-name-missing",
    ),
    pytest.param(
        [{"role": "assistant", "tool_calls": [{**CALL, "index": 0}]}],
        "messages[0].tool_calls[0].index",
        "unknown_parameter",
        id="call-unknown-field",
    ),
    pytest.param(
        [{"role": "assistant", "content": "", "function_call": {"name": "f", "arguments": "{}"}}],
        "messages[0].function_call",
        "unsupported_parameter",
        id="message-function-call",
    ),
]


def test_a_json_answer_goes_with_tools_only_when_the_choice_is_made() -> None:
    json_answer = {"type": "json_object"}
    error = rejection(chat(tools=[WEATHER], response_format=json_answer))
    assert (error.param, error.code) == ("response_format", "invalid_value")
    for choice in ("required", "none"):
        request = parse_chat_completion(
            chat(tools=[WEATHER], tool_choice=choice, response_format=json_answer)
        ).request
        assert request.tool_choice == choice


@pytest.mark.parametrize(("fields", "param", "code"), BAD_TOOL_REQUESTS)
def test_bad_tool_requests_are_rejected(fields: dict[str, Any], param: str, code: str) -> None:
    error = rejection(chat(**fields))

    assert (error.param, error.code) == (param, code), error.message
    assert param in error.message


@pytest.mark.parametrize(("messages", "param", "code"), BAD_CONVERSATIONS)
def test_bad_tool_conversations_are_rejected(
    messages: list[dict[str, Any]], param: str, code: str
) -> None:
    error = rejection(chat(messages=messages))

    assert (error.param, error.code) == (param, code), error.message
    assert param in error.message
