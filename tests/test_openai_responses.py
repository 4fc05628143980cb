from __future__ import annotations

import json
import re

import pytest
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import ValidationError

from control_plane.inference.chat_chunks import ChatStream, chat_chunk, chat_usage_chunk
from control_plane.inference.chat_objects import chat_completion
from control_plane.inference.generated_output import GeneratedOutput
from control_plane.inference.openai_objects import (
    Header,
    models_list,
    new_completion_id,
    sse_event,
)
from control_plane.inference.text_objects import text_chunk, text_completion, text_usage_chunk
from paddler.protocol import Done, FinishReason, Token, Usage

USAGE = Usage(prompt_tokens=7, completion_tokens=5)
CREATED = 1_700_000_000


def header(id: str = "chatcmpl-1", model: str = "m") -> Header:
    return Header(id, CREATED, model)


def output(text: str) -> GeneratedOutput:
    whole = GeneratedOutput()
    whole.add(Token(job_id="j", text=text))
    return whole


def done(finish_reason: FinishReason = "stop") -> Done:
    return Done(job_id="j", finish_reason=finish_reason, usage=USAGE)


def test_chat_completion_is_parsed_by_the_openai_sdk() -> None:
    body = chat_completion(header(model="llama"), output("Hello!"), done())

    parsed = ChatCompletion.model_validate(body)

    assert parsed.id == "chatcmpl-1"
    assert parsed.object == "chat.completion"
    assert parsed.created == CREATED
    assert parsed.model == "llama"
    assert len(parsed.choices) == 1
    assert parsed.choices[0].index == 0
    assert parsed.choices[0].message.role == "assistant"
    assert parsed.choices[0].message.content == "Hello!"
    assert parsed.choices[0].finish_reason == "stop"
    assert parsed.usage is not None
    assert parsed.usage.prompt_tokens == 7
    assert parsed.usage.completion_tokens == 5
    assert parsed.usage.total_tokens == 12


@pytest.mark.parametrize(
    ("finish_reason", "expected"),
    [("stop", "stop"), ("length", "length")],
)
def test_finish_reasons_map_to_ones_openai_clients_know(
    finish_reason: FinishReason, expected: str
) -> None:
    chat = ChatCompletion.model_validate(
        chat_completion(header(), GeneratedOutput(), done(finish_reason))
    )
    text = Completion.model_validate(
        text_completion(header("cmpl-1"), GeneratedOutput(), done(finish_reason))
    )

    assert chat.choices[0].finish_reason == expected
    assert text.choices[0].finish_reason == expected


def test_chat_stream_chunks_are_parsed_by_the_openai_sdk() -> None:
    stream = ChatStream(header(), logprobs=False, include_usage=False)
    [first] = map(ChatCompletionChunk.model_validate, stream.opening())
    [middle] = map(ChatCompletionChunk.model_validate, stream.piece(Token(job_id="j", text="Hi")))
    [last] = map(ChatCompletionChunk.model_validate, stream.ending(done("length")))

    for chunk in (first, middle, last):
        assert chunk.object == "chat.completion.chunk"
        assert chunk.id == "chatcmpl-1"
        assert chunk.created == CREATED
        assert chunk.model == "m"
        assert len(chunk.choices) == 1
        assert chunk.usage is None
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content is None
    assert first.choices[0].finish_reason is None
    assert middle.choices[0].delta.role is None
    assert middle.choices[0].delta.content == "Hi"
    assert middle.choices[0].finish_reason is None
    assert last.choices[0].delta.content is None
    assert last.choices[0].finish_reason == "length"


def test_a_piece_without_text_makes_no_chunk() -> None:
    stream = ChatStream(header(), logprobs=False, include_usage=True)

    assert stream.piece(Token(job_id="j")) == []
    assert len(stream.ending(done())) == 2


def test_chat_usage_chunk_has_no_choices_and_the_usage() -> None:
    chunk = ChatCompletionChunk.model_validate(chat_usage_chunk(header(), done()))

    assert chunk.choices == []
    assert chunk.usage is not None
    assert chunk.usage.total_tokens == 12


def test_text_completion_is_parsed_by_the_openai_sdk() -> None:
    body = text_completion(header("cmpl-1", "llama"), output(" world"), done("length"))

    parsed = Completion.model_validate(body)

    assert parsed.object == "text_completion"
    assert parsed.id == "cmpl-1"
    assert parsed.model == "llama"
    assert parsed.choices[0].text == " world"
    assert parsed.choices[0].index == 0
    assert parsed.choices[0].finish_reason == "length"
    assert parsed.usage is not None
    assert parsed.usage.total_tokens == 12


def test_last_text_chunk_is_parsed_by_the_openai_sdk() -> None:
    chunk = Completion.model_validate(text_chunk(header("cmpl-1"), "!", finish_reason="stop"))

    assert chunk.object == "text_completion"
    assert chunk.choices[0].text == "!"
    assert chunk.choices[0].finish_reason == "stop"
    assert chunk.usage is None


def test_middle_text_chunk_differs_from_the_sdk_model_only_by_a_null_finish_reason() -> None:
    # OpenAI streams legacy completions with "finish_reason": null until the last chunk, though
    # the SDK's Completion type declares it non-null (the SDK builds stream chunks without
    # validating). Everything else must validate.
    body = text_chunk(header("cmpl-1"), "Hel")

    with pytest.raises(ValidationError) as raised:
        Completion.model_validate(body)

    assert [error["loc"] for error in raised.value.errors()] == [("choices", 0, "finish_reason")]
    assert body["choices"][0]["finish_reason"] is None
    assert body["choices"][0]["text"] == "Hel"


def test_text_usage_chunk_has_no_choices_and_the_usage() -> None:
    chunk = Completion.model_validate(text_usage_chunk(header("cmpl-1"), done()))

    assert chunk.choices == []
    assert chunk.usage is not None
    assert chunk.usage.prompt_tokens == 7


def test_models_list_with_one_created_timestamp() -> None:
    body = models_list(["a", "b"], CREATED)

    assert body["object"] == "list"
    models = [Model.model_validate(entry) for entry in body["data"]]
    assert [model.id for model in models] == ["a", "b"]
    assert all(model.object == "model" for model in models)
    assert all(model.created == CREATED for model in models)
    assert all(model.owned_by == "paddler" for model in models)


def test_models_list_with_a_timestamp_per_model() -> None:
    body = models_list(["a", "b"], {"a": 1, "b": 2})

    models = [Model.model_validate(entry) for entry in body["data"]]
    assert [(model.id, model.created) for model in models] == [("a", 1), ("b", 2)]


def test_models_list_can_be_empty() -> None:
    assert models_list([], CREATED) == {"object": "list", "data": []}


def test_new_completion_ids_have_the_openai_prefix_and_are_unique() -> None:
    chat_ids = {new_completion_id("chat") for _ in range(100)}
    completion_id = new_completion_id("completion")

    assert len(chat_ids) == 100
    assert all(re.fullmatch(r"chatcmpl-[0-9a-f]{24}", chat_id) for chat_id in chat_ids)
    assert re.fullmatch(r"cmpl-[0-9a-f]{24}", completion_id)


def test_sse_event_encodes_a_dict_as_one_json_data_line() -> None:
    chunk = chat_chunk(header(), {"content": "line one\nline two"})

    event = sse_event(chunk)

    assert event.startswith(b"data: ")
    assert event.endswith(b"\n\n")
    assert event.count(b"\n") == 2
    assert json.loads(event[len(b"data: ") :]) == chunk


def test_sse_event_sends_a_string_verbatim() -> None:
    assert sse_event("[DONE]") == b"data: [DONE]\n\n"
