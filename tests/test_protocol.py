"""Every wire message survives encode → decode, and bad frames are refused."""

from __future__ import annotations

import pydantic
import pytest

from paddler import protocol

USAGE = protocol.Usage(prompt_tokens=3, completion_tokens=5)
REQUEST = protocol.GenerationRequest(
    kind="chat",
    messages=(protocol.ChatMessage(role="user", content="héllo 😀"),),
    sampling=protocol.SamplingParams(max_tokens=8, temperature=0.0, seed=1, stop=("\n",)),
)

EMBEDDING_REQUEST = protocol.EmbeddingRequest(inputs=("héllo", "world"))

AGENT_MESSAGES: list[protocol.Message] = [
    protocol.Hello(
        agent_id="a1", name="n", version="0.1", slots=4, model="m", model_source="/m.gguf", pool="p"
    ),
    protocol.Hello(
        agent_id="a1",
        name="n",
        version="0.1",
        slots=1,
        model="m",
        model_source="/m.gguf",
        pool="p",
        embeddings=True,
    ),
    protocol.Status(state="ready", slots_busy=1, slots_total=4, model="m", issues=("x",)),
    protocol.Status(state="draining", slots_busy=1, slots_total=4, model="m", applied_version=3),
    protocol.Token(job_id="j", text="tok"),
    protocol.Done(job_id="j", finish_reason="length", usage=USAGE, seconds_total=1.5),
    protocol.Embeddings(job_id="j", vectors=((0.6, -0.8), (1.0, 0.0)), prompt_tokens=7),
    protocol.JobError(job_id="j", code="context_length_exceeded", message="too long"),
    protocol.Goodbye(reason="shutting down"),
]
CONTROL_PLANE_MESSAGES: list[protocol.Message] = [
    protocol.Welcome(pool="p", heartbeat_seconds=1.5),
    protocol.Job(job_id="j", request=REQUEST),
    protocol.Job(job_id="j", request=EMBEDDING_REQUEST),
    protocol.Cancel(job_id="j"),
    protocol.Drain(),
    protocol.DesiredState(version=2, model_source="s3://models/m.gguf", slots=2),
    protocol.DesiredState(
        version=3, model_source="/m.gguf", slots=1, chat_template="{{ x }}", context_size=512
    ),
]


@pytest.mark.parametrize("message", AGENT_MESSAGES, ids=lambda m: type(m).__name__)
def test_agent_messages_round_trip(message: protocol.Message) -> None:
    assert protocol.decode_agent_message(protocol.encode(message)) == message


@pytest.mark.parametrize("message", CONTROL_PLANE_MESSAGES, ids=lambda m: type(m).__name__)
def test_control_plane_messages_round_trip(message: protocol.Message) -> None:
    assert protocol.decode_control_plane_message(protocol.encode(message)) == message


def test_frames_carry_type_and_protocol_version() -> None:
    frame = protocol.encode(protocol.Cancel(job_id="j"))
    assert '"type":"cancel"' in frame and f'"protocol":{protocol.PROTOCOL_VERSION}' in frame


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        '{"type": "job", "job_id": "j"}',
        '{"type": "teleport"}',
        '{"type": "token", "job_id": "j", "text": "x", "extra": 1}',
        '{"type": "hello", "agent_id": "a", "name": "n", "version": "1", "slots": 0,'
        ' "model": "m", "model_source": "m.gguf", "pool": "p"}',
    ],
)
def test_invalid_frames_are_refused(frame: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        protocol.decode_agent_message(frame)


def test_desired_state_needs_a_version_a_source_and_slots() -> None:
    for frame in (
        '{"type": "desired_state", "version": 0, "model_source": "m", "slots": 1}',
        '{"type": "desired_state", "version": 1, "model_source": "", "slots": 1}',
        '{"type": "desired_state", "version": 1, "model_source": "m", "slots": 0}',
    ):
        with pytest.raises(pydantic.ValidationError):
            protocol.decode_control_plane_message(frame)


def test_directions_do_not_mix() -> None:
    with pytest.raises(pydantic.ValidationError):
        protocol.decode_agent_message(protocol.encode(protocol.Cancel(job_id="j")))


def test_job_requests_are_told_apart_by_kind() -> None:
    generation = protocol.decode_control_plane_message(
        protocol.encode(protocol.Job(job_id="g", request=REQUEST))
    )
    embedding = protocol.decode_control_plane_message(
        protocol.encode(protocol.Job(job_id="e", request=EMBEDDING_REQUEST))
    )
    assert isinstance(generation, protocol.Job) and isinstance(embedding, protocol.Job)
    assert isinstance(generation.request, protocol.GenerationRequest)
    assert isinstance(embedding.request, protocol.EmbeddingRequest)
    assert embedding.request.inputs == ("héllo", "world")


def test_hello_without_embeddings_field_means_no_embeddings() -> None:
    frame = (
        '{"type": "hello", "agent_id": "a", "name": "n", "version": "1", "slots": 1,'
        ' "model": "m", "model_source": "m.gguf", "pool": "p"}'
    )
    hello = protocol.decode_agent_message(frame)
    assert isinstance(hello, protocol.Hello) and hello.embeddings is False


@pytest.mark.parametrize(
    "request_json",
    [
        '{"kind": "embedding", "inputs": []}',
        '{"kind": "embedding", "inputs": ["a"], "prompt": "x"}',
        '{"kind": "translation", "inputs": ["a"]}',
        '{"inputs": ["a"]}',
    ],
)
def test_invalid_job_requests_are_refused(request_json: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        protocol.decode_control_plane_message(
            f'{{"type": "job", "job_id": "j", "request": {request_json}}}'
        )
