"""Tool calls in chat answers, whole and streamed, as the openai SDK reads and accumulates them."""

from __future__ import annotations

import json
from typing import Any

from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionToolParam,
    ParsedChatCompletion,
    ParsedChatCompletionMessage,
    ParsedFunctionToolCall,
)

from control_plane.inference.chat_chunks import ChatStream
from control_plane.inference.chat_objects import chat_completion
from control_plane.inference.generated_output import GeneratedOutput
from control_plane.inference.openai_objects import Header, JsonObject
from paddler.protocol import Done, Token, ToolCallDelta, Usage

HEADER = Header("chatcmpl-1", 1_700_000_000, "m")
DONE = Done(
    job_id="j", finish_reason="tool_calls", usage=Usage(prompt_tokens=9, completion_tokens=30)
)
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            "strict": True,
        },
    },
    {"type": "function", "function": {"name": "get_time", "strict": True}},
]

# Text before the calls, then two calls whose arguments arrive in pieces, as an agent sends them.
PIECES = [
    Token(job_id="j", text="Let me check."),
    Token(job_id="j", tool_calls=(ToolCallDelta(index=0, id="call_a", name="get_weather"),)),
    Token(job_id="j", tool_calls=(ToolCallDelta(index=0, arguments='{"city": '),)),
    Token(job_id="j", tool_calls=(ToolCallDelta(index=0, arguments='"Paris"}'),)),
    Token(
        job_id="j",
        tool_calls=(ToolCallDelta(index=1, id="call_b", name="get_time", arguments="{}"),),
    ),
]


def whole(pieces: list[Token]) -> ChatCompletion:
    output = GeneratedOutput()
    for piece in pieces:
        output.add(piece)
    return ChatCompletion.model_validate(chat_completion(HEADER, output, DONE))


def streamed(pieces: list[Token]) -> list[JsonObject]:
    stream = ChatStream(HEADER, logprobs=False, include_usage=False)
    chunks = stream.opening()
    for piece in pieces:
        chunks += stream.piece(piece)
    return chunks + stream.ending(DONE)


def accumulated(chunks: list[JsonObject]) -> ParsedChatCompletion[Any]:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState(input_tools=TOOLS)
    for chunk in chunks:
        state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    return state.get_final_completion()


def calls(message: ParsedChatCompletionMessage[Any] | ChatCompletionMessage) -> list[Any]:
    """``(id, name, arguments)`` of each function call of ``message``."""
    found = []
    for call in message.tool_calls or []:
        assert isinstance(call, ChatCompletionMessageFunctionToolCall)
        found.append((call.id, call.function.name, call.function.arguments))
    return found


def test_a_whole_answer_carries_its_tool_calls() -> None:
    completion = whole(PIECES)

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    assert {call.type for call in choice.message.tool_calls or []} == {"function"}
    assert calls(choice.message) == [
        ("call_a", "get_weather", '{"city": "Paris"}'),
        ("call_b", "get_time", "{}"),
    ]


def test_content_is_null_when_the_answer_is_only_tool_calls() -> None:
    completion = whole(PIECES[1:])

    assert completion.choices[0].message.content is None
    assert completion.choices[0].message.model_extra == {}  # no reasoning_content


def test_streamed_tool_calls_are_shaped_as_openai_streams_them() -> None:
    chunks = streamed(PIECES)

    deltas = [chunk["choices"][0]["delta"] for chunk in chunks]
    assert deltas[0] == {"role": "assistant", "content": None}
    assert deltas[2] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ]
    }
    assert deltas[3] == {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_the_sdk_accumulates_a_stream_into_the_whole_answer() -> None:
    final = accumulated(streamed(PIECES))

    expected = whole(PIECES).choices[0].message
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.content == expected.content
    assert calls(message) == calls(expected)
    parsed = []
    for call in message.tool_calls or []:
        assert isinstance(call, ParsedFunctionToolCall)
        parsed.append(call.function.parsed_arguments)
    assert parsed == [{"city": "Paris"}, {}]


def test_a_stream_of_only_tool_calls_accumulates_null_content() -> None:
    final = accumulated(streamed(PIECES[1:]))

    assert final.choices[0].message.content is None
    assert [json.loads(arguments) for _, _, arguments in calls(final.choices[0].message)] == [
        {"city": "Paris"},
        {},
    ]
