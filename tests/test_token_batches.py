"""Token pieces that are ready together cross the agent socket as one ``Tokens`` frame, and
the control plane hands each piece to its own job as if it had come alone."""

from __future__ import annotations

from agent.token_batches import token_batches
from control_plane.serving.fleet import AgentLink, Fleet
from control_plane.serving.jobs import InferenceJob
from control_plane.serving.scheduler import Scheduler
from paddler import protocol

REQUEST = protocol.GenerationRequest(kind="completion", prompt="hi")


def rich_piece(job_id: str) -> protocol.Token:
    return protocol.Token(
        job_id=job_id,
        text="Hi",
        reasoning="hmm",
        tool_calls=(protocol.ToolCallDelta(index=0, id="call_1", name="f", arguments='{"a"'),),
        logprobs=(
            protocol.TokenLogprob(
                token="Hi",
                logprob=-0.1,
                bytes=(72, 105),
                top_logprobs=(protocol.TopLogprob(token="Hi", logprob=-0.1),),
            ),
        ),
    )


def done(job_id: str) -> protocol.Done:
    usage = protocol.Usage(prompt_tokens=1, completion_tokens=2)
    return protocol.Done(job_id=job_id, finish_reason="stop", usage=usage)


def test_pieces_ready_together_go_as_one_frame_in_order() -> None:
    first, second, third = rich_piece("a"), protocol.Token(job_id="b", text="x"), rich_piece("a")
    messages: list[protocol.Message] = [first, second, done("b"), third]
    frames = [protocol.decode_agent_message(frame) for frame in token_batches(messages, 10**6)]
    assert frames == [protocol.Tokens(pieces=(first, second)), done("b"), third]


def test_a_batch_larger_than_a_frame_is_split_never_cut() -> None:
    pieces = [rich_piece(f"job-{index}") for index in range(40)]
    limit = len(protocol.encode(protocol.Tokens(pieces=tuple(pieces[:10]))))
    frames = list(token_batches(pieces, limit))
    assert len(frames) > 1 and all(len(frame) <= limit for frame in frames)
    received: list[protocol.Token] = []
    for frame in frames:
        message = protocol.decode_agent_message(frame)
        assert isinstance(message, protocol.Tokens | protocol.Token)
        received += message.pieces if isinstance(message, protocol.Tokens) else [message]
    assert received == pieces


async def test_each_piece_of_a_batch_reaches_its_own_job() -> None:
    scheduler = Scheduler(Fleet(), max_buffered=10, max_attempts=3)
    agent = AgentLink(agent_id="a", name="a", pool="m", model="m", slots=2)
    agent.reported_state = "ready"
    scheduler.agent_joined(agent)
    one, two = InferenceJob(pool="m", request=REQUEST), InferenceJob(pool="m", request=REQUEST)
    scheduler.submit(one)
    scheduler.submit(two)
    pieces = (rich_piece(one.id), protocol.Token(job_id=two.id, text="b"), rich_piece(one.id))
    stray = protocol.Token(job_id="not-a-job", text="?")
    scheduler.agent_message(agent, protocol.Tokens(pieces=(*pieces, stray)))
    assert one.started and two.started
    assert [one.events.get_nowait(), one.events.get_nowait()] == [pieces[0], pieces[2]]
    assert two.events.get_nowait() == pieces[1] and two.events.empty() and one.events.empty()
