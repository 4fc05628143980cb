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

AGENT_MESSAGES: list[protocol.Message] = [
    protocol.Hello(
        agent_id="a1", name="n", version="0.1", slots=4, model="m", model_source="/m.gguf", pool="p"
    ),
    protocol.Status(state="ready", slots_busy=1, slots_total=4, model="m", issues=("x",)),
    protocol.Token(job_id="j", text="tok"),
    protocol.Done(job_id="j", finish_reason="length", usage=USAGE, seconds_total=1.5),
    protocol.JobError(job_id="j", code="context_length_exceeded", message="too long"),
    protocol.Goodbye(reason="shutting down"),
]
CONTROL_PLANE_MESSAGES: list[protocol.Message] = [
    protocol.Welcome(pool="p", heartbeat_seconds=1.5),
    protocol.Job(job_id="j", request=REQUEST),
    protocol.Cancel(job_id="j"),
    protocol.Drain(),
]


@pytest.mark.parametrize("message", AGENT_MESSAGES, ids=lambda m: type(m).__name__)
def test_agent_messages_round_trip(message: protocol.Message) -> None:
    assert protocol.decode_agent_message(protocol.encode(message)) == message


@pytest.mark.parametrize("message", CONTROL_PLANE_MESSAGES, ids=lambda m: type(m).__name__)
def test_control_plane_messages_round_trip(message: protocol.Message) -> None:
    assert protocol.decode_control_plane_message(protocol.encode(message)) == message


def test_frames_carry_type_and_protocol_version() -> None:
    frame = protocol.encode(protocol.Cancel(job_id="j"))
    assert '"type":"cancel"' in frame and '"protocol":1' in frame


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


def test_directions_do_not_mix() -> None:
    with pytest.raises(pydantic.ValidationError):
        protocol.decode_agent_message(protocol.encode(protocol.Cancel(job_id="j")))
