"""Tool calls through real processes with the official openai SDK, unchanged: SmolLM2 on its own
template (which does not render tools: the generic format) and on a Hermes-style template."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from openai.types.chat import (
    ChatCompletionMessage,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from tests.processes import ControlPlane
from tests.template_agents import FIXTURES, client_of_agent

HERMES_TEMPLATE = FIXTURES / "hermes_chatml.jinja"

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
CONVERT_SCHEMA = {
    "type": "object",
    "properties": {"amount": {"type": "number"}, "currency": {"type": "string"}},
    "required": ["amount", "currency"],
    "additionalProperties": False,
}
SCHEMAS = {"get_weather": WEATHER_SCHEMA, "convert_currency": CONVERT_SCHEMA}
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": SCHEMAS[name],
            "strict": True,
        },
    }
    for name, description in (
        ("get_weather", "The current weather in a city."),
        ("convert_currency", "Convert an amount of euros to another currency."),
    )
]
QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the weather like in Paris today?"}
]


@pytest.fixture(params=["own-template", "hermes-template"])
def client(
    request: pytest.FixtureRequest,
    control_plane: ControlPlane,
    tmp_path: Path,
    smollm2_path: Path,
) -> Iterator[openai.OpenAI]:
    template = HERMES_TEMPLATE if request.param == "hermes-template" else None
    with client_of_agent(control_plane, tmp_path, smollm2_path, "tools", template) as client:
        yield client


@pytest.fixture
def model(smollm2_path: Path) -> str:
    return smollm2_path.stem


def function_calls(message: ChatCompletionMessage) -> list[ChatCompletionMessageFunctionToolCall]:
    calls = []
    for call in message.tool_calls or []:
        assert isinstance(call, ChatCompletionMessageFunctionToolCall)
        calls.append(call)
    return calls


def check_call(call: ChatCompletionMessageFunctionToolCall, name: str | None = None) -> Any:
    """The call's parsed arguments, after checking its shape and its schema."""
    assert call.type == "function"
    assert call.id.startswith("call_")
    if name is not None:
        assert call.function.name == name
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, SCHEMAS[call.function.name])
    return arguments


def request(model: str, **overrides: Any) -> Any:
    """The fields of a greedy request offering :data:`TOOLS` about :data:`QUESTION`."""
    fields: dict[str, Any] = {
        "model": model,
        "messages": QUESTION,
        "tools": TOOLS,
        "tool_choice": "required",
        "max_tokens": 120,
        "temperature": 0,
    }
    return {**fields, **overrides}


def test_required_tool_choice_gets_a_call_whose_arguments_fit_the_schema(
    client: openai.OpenAI, model: str
) -> None:
    completion = client.chat.completions.create(**request(model))

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = function_calls(choice.message)
    assert calls
    for call in calls:
        check_call(call)


def test_a_named_function_is_called_streaming_or_not(client: openai.OpenAI, model: str) -> None:
    fields = request(
        model,
        messages=[{"role": "user", "content": "How much is 20 euros in dollars?"}],
        tool_choice={"type": "function", "function": {"name": "convert_currency"}},
    )
    whole = client.chat.completions.create(**fields)
    with client.chat.completions.stream(**fields) as stream:
        deltas = [event for event in stream if event.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()

    [call] = function_calls(whole.choices[0].message)
    arguments = check_call(call, "convert_currency")
    [streamed] = final.choices[0].message.tool_calls or []
    assert final.choices[0].finish_reason == "tool_calls"
    assert streamed.function.name == "convert_currency"
    assert streamed.function.parsed_arguments == arguments  # same greedy answer, whole or streamed
    assert len(deltas) > 1  # the arguments came in pieces


def test_streamed_tool_call_chunks_open_each_call_with_its_id_and_name(
    client: openai.OpenAI, model: str
) -> None:
    stream = client.chat.completions.create(**request(model), stream=True)

    pieces = [
        piece
        for chunk in stream
        if chunk.choices
        for piece in chunk.choices[0].delta.tool_calls or []
    ]
    assert pieces
    first = pieces[0]
    assert first.index == 0 and first.type == "function"
    assert first.id is not None and first.function is not None and first.function.name
    later = [piece for piece in pieces[1:] if piece.index == 0]
    assert all(piece.id is None and piece.function for piece in later)
    arguments = "".join(
        piece.function.arguments or "" for piece in pieces if piece.index == 0 and piece.function
    )
    jsonschema.validate(json.loads(arguments), SCHEMAS[first.function.name])


def test_a_tool_result_is_answered_in_the_next_turn(client: openai.OpenAI, model: str) -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    first = client.chat.completions.create(**request(model, tool_choice=named))
    [call] = function_calls(first.choices[0].message)
    check_call(call, "get_weather")
    conversation: list[ChatCompletionMessageParam] = [
        *QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21, "sky": "sunny"}'},
    ]

    second = client.chat.completions.create(
        **request(model, messages=conversation, tool_choice="none", max_tokens=40)
    )

    answer = second.choices[0]
    assert answer.finish_reason in ("stop", "length")
    assert answer.message.tool_calls is None
    assert answer.message.content


def test_a_tool_message_answering_no_call_is_a_bad_request(control_plane: ControlPlane) -> None:
    client = openai.OpenAI(base_url=control_plane.inference_url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="any",
            messages=[*QUESTION, {"role": "tool", "tool_call_id": "call_x", "content": "21"}],
            tools=TOOLS,
        )

    assert bad.value.param == "messages[1].tool_call_id"
