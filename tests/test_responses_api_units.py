"""The Responses API's parts without processes: reading requests and input items, and the
output items and stream events built from an agent's pieces, as the openai SDK reads them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from openai import omit
from openai._models import construct_type
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from control_plane.errors import OpenAIError
from control_plane.inference.responses_api.generation import ResponseRun
from control_plane.inference.responses_api.input_items import read_input
from control_plane.inference.responses_api.item_list import item_list
from control_plane.inference.responses_api.requests import ResponsesCall, parse_responses_request
from control_plane.tenancy import KeyDirectory
from paddler.protocol import (
    ChatMessage,
    Done,
    FinishReason,
    FunctionChoice,
    ResponseFormat,
    Token,
    ToolCall,
    ToolCallDelta,
    Usage,
)

EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def parse(**fields: Any) -> ResponsesCall:
    return parse_responses_request(json.dumps({"model": "m", "input": "hi", **fields}))


def refused(**fields: Any) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        parse(**fields)
    assert caught.value.status == 400
    return caught.value


def refused_input(raw: object, earlier: dict[str, str] | None = None) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        read_input(raw, earlier or {})
    assert caught.value.status == 400
    return caught.value


# -- the request body ------------------------------------------------------------------------


def test_a_plain_request_keeps_the_defaults_openai_documents() -> None:
    call = parse()
    assert call.store and not call.stream and call.parallel_tool_calls
    assert call.tools == () and call.tool_choice == "none"
    assert call.sampling.response_format is None and call.sampling.max_tokens is None


def test_sampling_fields_and_text_format_reach_the_job() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    call = parse(
        temperature=0,
        top_p=0.5,
        max_output_tokens=7,
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema}},
    )
    assert (call.sampling.temperature, call.sampling.top_p, call.sampling.max_tokens) == (0, 0.5, 7)
    assert call.sampling.response_format == ResponseFormat(type="json_schema", json_schema=schema)
    assert parse(text={"format": {"type": "json_object"}}).sampling.response_format == (
        ResponseFormat(type="json_object")
    )


def test_function_tools_and_a_named_choice() -> None:
    call = parse(tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"})
    assert [tool.name for tool in call.tools] == ["get_weather"]
    assert call.tool_choice == FunctionChoice(name="get_weather")
    assert parse(tools=[WEATHER]).tool_choice == "auto"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"frequency_penalty": 1}, "frequency_penalty"),
        ({"temperature": 3}, "temperature"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"store": "yes"}, "store"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{**WEATHER, "name": "bad name"}]}, "tools[0].name"),
        ({"tools": [{**WEATHER, "parameters": "no"}]}, "tools[0].parameters"),
        ({"tools": [{**WEATHER, "colour": "red"}]}, "tools[0].colour"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].name"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "name": "x"}},
            "tool_choice.name",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"text": {"format": {"type": "json_schema", "name": "a"}}}, "text.format.schema"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"tools": [WEATHER], "text": {"format": {"type": "json_object"}}}, "text.format"),
        ({"include": ["reasoning.encrypted_content"]}, "include"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k"),
    ],
)
def test_bad_fields_are_named(fields: dict[str, Any], param: str) -> None:
    assert refused(**fields).param == param


# -- input items -----------------------------------------------------------------------------


def test_a_string_is_one_user_message() -> None:
    given = read_input("Hello", {})
    assert given.messages == (ChatMessage(role="user", content="Hello"),)
    assert given.items[0]["type"] == "message" and given.items[0]["id"].startswith("msg_")
    assert given.items[0]["content"] == [{"type": "input_text", "text": "Hello"}]


def test_items_become_chat_turns() -> None:
    given = read_input(
        [
            {"role": "developer", "content": "Be brief."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}],
            },
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": '{"a":1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "42"}],
            },
        ],
        {},
    )
    assert given.messages == (
        ChatMessage(role="developer", content="Be brief."),
        ChatMessage(role="user", content="Hi"),
        ChatMessage(
            role="assistant",
            content="Let me look.",
            tool_calls=(
                ToolCall(id="c1", name="f", arguments="{}"),
                ToolCall(id="c2", name="g", arguments='{"a":1}'),
            ),
        ),
        ChatMessage(role="tool", content="sunny", name="f", tool_call_id="c1"),
        ChatMessage(role="tool", content="42", name="g", tool_call_id="c2"),
    )
    assert [item["type"] for item in given.items] == [
        "message",
        "message",
        "reasoning",
        "message",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
    ]
    assert given.items[2]["id"] == "rs_1"


def test_a_call_output_may_answer_a_call_of_the_previous_response() -> None:
    given = read_input(
        [{"type": "function_call_output", "call_id": "old", "output": "x"}], {"old": "f"}
    )
    assert given.messages == (ChatMessage(role="tool", content="x", name="f", tool_call_id="old"),)


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ("", "input"),
        ([], "input"),
        (None, "input"),
        (7, "input"),
        (["hi"], "input[0]"),
        ([{"role": "robot", "content": "x"}], "input[0].role"),
        ([{"role": "user"}], "input[0].content"),
        ([{"role": "user", "content": "x", "colour": 1}], "input[0].colour"),
        (
            [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}],
            "input[0].content[0].type",
        ),
        ([{"type": "function_call_output", "call_id": "nope", "output": "x"}], "input[0].call_id"),
        ([{"type": "function_call", "name": "f", "arguments": "{}"}], "input[0].call_id"),
        ([{"type": "item_reference", "id": "msg_1"}], "input[0].type"),
    ],
)
def test_bad_input_items_are_named(raw: object, param: str) -> None:
    assert refused_input(raw).param == param


def test_input_items_are_listed_newest_first_by_default() -> None:
    items = [{"id": f"msg_{n}"} for n in range(5)]
    page = item_list(items, {"limit": "2"})
    assert [item["id"] for item in page["data"]] == ["msg_4", "msg_3"] and page["has_more"]
    page = item_list(items, {"order": "asc", "after": "msg_2"})
    assert [item["id"] for item in page["data"]] == ["msg_3", "msg_4"] and not page["has_more"]


# -- output items and stream events ----------------------------------------------------------


def run_of(call: ResponsesCall) -> ResponseRun:
    return ResponseRun(call, "resp_1", 1_700_000_000)


async def generate(
    run: ResponseRun, tokens: list[Token], finish: FinishReason = "stop"
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The events a stream sends (with sequence numbers) and the finished response."""
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": run.body("in_progress")},
        {"type": "response.in_progress", "response": run.body("in_progress")},
    ]
    for token in tokens:
        events += run.output.add(token)
    usage = Usage(prompt_tokens=10, completion_tokens=5, cached_tokens=2, reasoning_tokens=3)
    closing, body = await run.finish(Done(job_id="j", finish_reason=finish, usage=usage))
    events += [*closing, {"type": f"response.{body['status']}", "response": body}]
    return [{**event, "sequence_number": n} for n, event in enumerate(events)], body


def sdk_accumulates(events: list[dict[str, Any]], tools: list[Any] | None = None) -> Response:
    state: ResponseStreamState[object] = ResponseStreamState(
        input_tools=tools if tools is not None else omit, text_format=omit
    )
    for event in events:
        EVENT.validate_python(event)  # every field the SDK's types require, rightly typed
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=event))  # type: ignore[arg-type]
    assert state._completed_response is not None
    return state._completed_response


async def test_thoughts_text_and_calls_become_items_in_order() -> None:
    run = run_of(parse(tools=[WEATHER]))
    tokens = [
        Token(job_id="j", reasoning="Think"),
        Token(job_id="j", reasoning="ing."),
        Token(job_id="j", text="Let me "),
        Token(job_id="j", text="check."),
        Token(job_id="j", tool_calls=(ToolCallDelta(index=0, id="call_a", name="get_weather"),)),
        Token(job_id="j", tool_calls=(ToolCallDelta(index=0, arguments='{"city":'),)),
        Token(job_id="j", tool_calls=(ToolCallDelta(index=0, arguments='"Oslo"}'),)),
        Token(
            job_id="j",
            tool_calls=(
                ToolCallDelta(
                    index=1, id="call_b", name="get_weather", arguments='{"city":"Rome"}'
                ),
            ),
        ),
    ]
    events, body = await generate(run, tokens, "tool_calls")
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    output = body["output"]
    assert [item["type"] for item in output] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
    ]
    assert output[0]["content"] == [{"type": "reasoning_text", "text": "Thinking."}]
    assert output[1]["content"][0]["text"] == "Let me check."
    assert (output[2]["call_id"], output[2]["arguments"]) == ("call_a", '{"city":"Oslo"}')
    assert output[3]["call_id"] == "call_b"
    assert body["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 8},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 15,
    }
    assert run.output.assistant_message() == ChatMessage(
        role="assistant",
        content="Let me check.",
        tool_calls=(
            ToolCall(id="call_a", name="get_weather", arguments='{"city":"Oslo"}'),
            ToolCall(id="call_b", name="get_weather", arguments='{"city":"Rome"}'),
        ),
    )
    final = sdk_accumulates(events, [WEATHER])
    assert final.model_dump(exclude_none=True) == Response.construct(**body).model_dump(
        exclude_none=True
    )
    assert final.output_text == "Let me check."


async def test_the_sdk_reads_the_response_object_unchanged() -> None:
    run = run_of(parse(instructions="Be brief.", metadata={"k": "v"}))
    _, body = await generate(run, [Token(job_id="j", text="Paris.")])
    response = Response.model_validate(body)  # validated, not just constructed
    assert response.output_text == "Paris."
    assert response.status == "completed" and response.instructions == "Be brief."
    assert response.metadata == {"k": "v"} and response.usage is not None


async def test_a_length_cut_is_incomplete() -> None:
    run = run_of(parse(max_output_tokens=2))
    events, body = await generate(run, [Token(job_id="j", text="Once upon")], "length")
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["status"] == "incomplete"
    assert events[-1]["type"] == "response.incomplete"


async def test_an_empty_answer_still_has_a_message() -> None:
    _, body = await generate(run_of(parse()), [])
    assert [item["type"] for item in body["output"]] == ["message"]
    assert body["output"][0]["content"][0]["text"] == ""


async def test_a_stored_run_is_saved_before_it_is_told_done() -> None:
    saved: list[tuple[dict[str, Any], ChatMessage]] = []

    async def save(body: dict[str, Any], answer: ChatMessage) -> None:
        saved.append((body, answer))

    run = ResponseRun(parse(), "resp_2", 1, save)
    _, body = await generate(run, [Token(job_id="j", text="Hi!")])
    assert saved == [(body, ChatMessage(role="assistant", content="Hi!"))]


def test_a_stored_response_belongs_to_the_digest_of_its_key() -> None:
    keys = KeyDirectory("k-one, k-two", None)

    def owner(directory: KeyDirectory, authorization: str) -> str:
        caller = directory.authenticate(authorization)
        assert caller is not None
        return caller.owner

    one = owner(keys, "Bearer k-one")
    assert one == hashlib.sha256(b"k-one").hexdigest()
    assert one != owner(keys, "Bearer k-two")
    open_api = KeyDirectory("", None)
    assert owner(open_api, "Bearer whatever") == owner(open_api, "") == ""
