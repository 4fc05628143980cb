"""``/v1/responses`` with the official openai SDK, unchanged, against a real control plane and a
SmolLM2 agent: create, stream, continue (across a restart), keys, storage, bad input."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest

from tests.processes import Agent, ControlPlane
from tests.serving_fixtures import StartAgent

KEYS = ("k-alice", "k-bob")


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    """Two API keys; the rest as the shared fixture has it."""
    plane = ControlPlane(
        tmp_path,
        "--buffer-timeout",
        "20",
        "--api-keys",
        ",".join(KEYS),
        "--keepalive-interval",
        "1",
    )
    plane.start()
    yield plane
    plane.stop()


def sdk(plane: ControlPlane, key: str = KEYS[0]) -> openai.OpenAI:
    return openai.OpenAI(base_url=plane.inference_url + "/v1", api_key=key, max_retries=0)


@pytest.fixture
def client(control_plane: ControlPlane, start_agent: StartAgent) -> openai.OpenAI:
    start_agent("sdk", slots=2)
    return sdk(control_plane)


@pytest.fixture
def model(smollm2_path: Path) -> str:
    return smollm2_path.stem


def test_a_string_input(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(
        model=model,
        instructions="You are a helpful assistant.",
        input="What is the capital of France?",
        temperature=0,
        max_output_tokens=24,
    )
    assert response.id.startswith("resp_") and response.object == "response"
    assert "Paris" in response.output_text
    assert response.status in ("completed", "incomplete")
    assert response.usage is not None and response.usage.input_tokens > 5
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.model == model and response.to_dict()["store"] is True


def test_items_and_instructions(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(
        model=model,
        instructions="You answer with one word.",
        input=[
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": [{"type": "input_text", "text": "Another one?"}]},
        ],
        temperature=0,
        max_output_tokens=8,
    )
    assert response.instructions == "You answer with one word."
    (message,) = response.output
    assert message.type == "message" and message.role == "assistant"
    assert response.output_text.strip()


def test_a_stream_gives_what_a_whole_response_gives(client: openai.OpenAI, model: str) -> None:
    question = "Name three colours."
    whole = client.responses.create(
        model=model, input=question, temperature=0, max_output_tokens=16
    )
    with client.responses.stream(
        model=model, input=question, temperature=0, max_output_tokens=16
    ) as stream:
        events = list(stream)
        final = stream.get_final_response() if whole.status == "completed" else None
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-1] == f"response.{whole.status}"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    streamed = "".join(
        event.delta for event in events if event.type == "response.output_text.delta"
    )
    assert streamed == whole.output_text
    if final is not None:
        assert final.output_text == whole.output_text
        assert final.usage is not None and whole.usage is not None
        assert final.usage.output_tokens == whole.usage.output_tokens


def test_a_stream_that_fails_says_so(client: openai.OpenAI, model: str) -> None:
    too_long = "word " * 3000  # the agents' context is 1024 tokens
    events = list(client.responses.create(model=model, input=too_long, stream=True))
    assert [event.type for event in events] == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    assert events[2].code == "context_length_exceeded"  # type: ignore[union-attr]
    failed = events[3].response  # type: ignore[union-attr]
    assert failed.status == "failed" and failed.error is not None


def test_a_conversation_continues_across_a_restart(
    control_plane: ControlPlane, client: openai.OpenAI, model: str
) -> None:
    first = client.responses.create(
        model=model, input="My name is Ada. Say hello.", temperature=0, max_output_tokens=12
    )
    control_plane.stop()
    control_plane.start()  # the same SQLite file in the same state directory
    control_plane.wait_for_ready_agent("sdk")
    assert client.responses.retrieve(first.id).output_text == first.output_text
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        input="What is my name?",
        temperature=0,
        max_output_tokens=12,
    )
    assert second.previous_response_id == first.id
    assert first.usage is not None and second.usage is not None
    # the first turn and its answer were replayed before the new question
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    items = client.responses.input_items.list(second.id)
    assert [item.type for item in items.data] == ["message"]


def test_another_key_can_neither_read_nor_continue_a_response(
    control_plane: ControlPlane, client: openai.OpenAI, model: str
) -> None:
    mine = client.responses.create(model=model, input="Hi", max_output_tokens=4)
    theirs = sdk(control_plane, KEYS[1])
    with pytest.raises(openai.NotFoundError):
        theirs.responses.retrieve(mine.id)
    with pytest.raises(openai.BadRequestError) as refused:
        theirs.responses.create(model=model, input="Hi", previous_response_id=mine.id)
    assert refused.value.param == "previous_response_id"
    assert refused.value.code == "previous_response_not_found"
    assert f"Previous response with id '{mine.id}' not found." in refused.value.message
    with pytest.raises(openai.NotFoundError):
        theirs.responses.delete(mine.id)
    assert client.responses.retrieve(mine.id).id == mine.id
    client.responses.delete(mine.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(mine.id)


def test_an_unstored_response_is_not_kept(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(model=model, input="Hi", max_output_tokens=4, store=False)
    assert response.to_dict()["store"] is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=model, input="Hi", previous_response_id=response.id)


def test_stored_responses_expire(tmp_path: Path, smollm2_path: Path, model: str) -> None:
    plane = ControlPlane(tmp_path, "--responses-retention", "2")  # an open API: no keys
    agent = Agent(plane, tmp_path, "brief", smollm2_path)
    plane.start()
    agent.start()
    try:
        plane.wait_for_ready_agent("brief")
        client = sdk(plane, "anything")
        response = client.responses.create(model=model, input="Hi", max_output_tokens=4)
        assert client.responses.retrieve(response.id).id == response.id
        time.sleep(2.5)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(response.id)
        with pytest.raises(openai.BadRequestError):
            client.responses.create(model=model, input="Hi", previous_response_id=response.id)
    finally:
        agent.stop()
        plane.stop()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": "Hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": "Hi", "seed": 1}, "seed"),
        (
            {"input": [{"type": "function_call_output", "call_id": "c", "output": ""}]},
            "input[0].call_id",
        ),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    control_plane: ControlPlane, model: str, fields: dict[str, object], param: str
) -> None:
    answer = httpx.post(
        control_plane.inference_url + "/v1/responses",
        json={"model": model, **fields},
        headers={"Authorization": f"Bearer {KEYS[0]}"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


def test_a_required_function_call(client: openai.OpenAI, model: str) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model=model,
        input="What is the weather in Paris?",
        tools=[
            {
                "type": "function",
                "name": "get_weather",
                "description": "The current weather in a city",
                "parameters": schema,
                "strict": True,
            }
        ],
        tool_choice="required",
        temperature=0,
        max_output_tokens=60,
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert calls, response.output
    assert calls[0].name == "get_weather" and calls[0].call_id
    jsonschema.validate(json.loads(calls[0].arguments), schema)
