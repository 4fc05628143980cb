"""A stream writes the events that are there together as one chunk: what ``relay.at_hand`` says
is at hand (the real scheduler and relay, in-memory agent links), and a chat stream through the
real inference app, read chunk by chunk as the server writes them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

from control_plane import server_sent_events
from control_plane.serving.jobs import InferenceJob, Tick
from control_plane.serving.relay import KeepAlive, Patience, Update, Waiting, at_hand, follow
from control_plane.serving.scheduler import Scheduler
from control_plane.state import ControlPlane
from paddler import protocol
from tests.in_process_app import chat_stream
from tests.test_scheduler import REQUEST, done, make_agent, scheduler_with, sent, submit

PATIENCE = Patience(
    buffer_timeout=60.0,
    first_token_timeout=60.0,
    stall_timeout=60.0,
    report_interval=60.0,
    keepalive_interval=60.0,
)


def tokens(job: InferenceJob, *texts: str) -> protocol.Tokens:
    """One frame carrying several pieces of ``job``, as an agent sends a decode step."""
    return protocol.Tokens(pieces=tuple(protocol.Token(job_id=job.id, text=t) for t in texts))


async def written(job: InferenceJob, updates: AsyncIterator[Update]) -> AsyncIterator[bytes]:
    """A stream as the routes write one: an event per update, two more after its end."""
    async for update in updates:
        if isinstance(update, protocol.Token):
            yield server_sent_events.event(update.text)
        elif isinstance(update, Waiting | KeepAlive):
            yield server_sent_events.comment("waiting")
        elif isinstance(update, protocol.Done):
            yield server_sent_events.event("end")
            break
    yield server_sent_events.event("[DONE]")


def stream_of(scheduler: Scheduler, job: InferenceJob) -> AsyncIterator[bytes]:
    updates = follow(job, scheduler, PATIENCE)
    return server_sent_events.coalesced(written(job, updates), partial(at_hand, job))


def events_in(chunk: bytes) -> list[str]:
    return [line.removeprefix(b"data: ").decode() for line in chunk.split(b"\n") if line]


async def test_nothing_is_at_hand_while_a_job_waits_or_prefills() -> None:
    agent = make_agent("a", slots=1)
    scheduler = scheduler_with(agent)
    running, waiting = submit(scheduler, REQUEST, REQUEST)
    waiting.events.put_nowait(Tick())  # a wake-up: its follower reads the clock, then waits
    assert not at_hand(waiting)
    assert not at_hand(running)  # dispatched, no token yet: a keep-alive goes out alone


async def test_a_started_job_has_its_tokens_at_hand_but_not_its_end_alone() -> None:
    agent = make_agent("a")
    scheduler = scheduler_with(agent)
    [job] = submit(scheduler, REQUEST)
    scheduler.agent_message(agent, tokens(job, "a", "b"))
    updates = follow(job, scheduler, PATIENCE)
    assert at_hand(job)
    await anext(updates)
    assert at_hand(job)
    await anext(updates)
    assert not at_hand(job)  # the next update needs the agent
    scheduler.agent_message(agent, tokens(job, "c"))
    scheduler.agent_message(agent, done(job.id))
    assert at_hand(job)  # a token before the end
    await anext(updates)
    assert not at_hand(job)  # its end alone: what it leads to may wait (a stored response)
    assert await anext(updates) == done(job.id)
    assert at_hand(job)  # the end was taken: the rest is written at once


async def test_a_frame_of_several_pieces_goes_out_as_one_chunk() -> None:
    agent = make_agent("a")
    scheduler = scheduler_with(agent)
    [job] = submit(scheduler, REQUEST)
    stream = stream_of(scheduler, job)
    scheduler.agent_message(agent, tokens(job, "Once", " upon", " a"))
    assert events_in(await anext(stream)) == ["Once", " upon", " a"]
    scheduler.agent_message(agent, tokens(job, " time"))
    assert events_in(await anext(stream)) == [" time"]  # alone: at once
    scheduler.agent_message(agent, tokens(job, ",", " the"))
    scheduler.agent_message(agent, done(job.id))
    chunks = [events_in(chunk) async for chunk in stream]
    # the tokens before the end together; the end and what follows it together
    assert chunks == [[",", " the"], ["end", "[DONE]"]]


async def test_a_slow_client_gets_the_backlog_in_one_chunk_and_every_event_in_order() -> None:
    agent = make_agent("a")
    scheduler = scheduler_with(agent)
    [job] = submit(scheduler, REQUEST)
    stream = stream_of(scheduler, job)
    texts = [f"t{n}" for n in range(50)]
    for text in texts[:20]:
        scheduler.agent_message(agent, protocol.Token(job_id=job.id, text=text))
    first = await anext(stream)
    for text in texts[20:]:
        scheduler.agent_message(agent, protocol.Token(job_id=job.id, text=text))
    scheduler.agent_message(agent, done(job.id))
    rest = [chunk async for chunk in stream]
    assert events_in(first) == texts[:20]
    assert len(rest) == 2
    expected = b"".join(server_sent_events.event(text) for text in [*texts, "end", "[DONE]"])
    assert first + b"".join(rest) == expected


async def test_a_waiting_job_reports_alone() -> None:
    scheduler = scheduler_with()
    [job] = submit(scheduler, REQUEST)
    patience = Patience(**{**PATIENCE.__dict__, "report_interval": 0.0})
    stream = server_sent_events.coalesced(
        written(job, follow(job, scheduler, patience)), partial(at_hand, job)
    )
    job.events.put_nowait(Tick())
    assert await anext(stream) == server_sent_events.comment("waiting")
    job.events.put_nowait(Tick())
    assert await anext(stream) == server_sent_events.comment("waiting")
    await stream.aclose()


# -- through the inference app ----------------------------------------------------------------


def data_of(chunks: list[bytes]) -> list[list[dict[str, Any] | str]]:
    return [
        [data if data == "[DONE]" else json.loads(data) for data in events_in(chunk)]
        for chunk in chunks
    ]


async def test_a_chat_stream_writes_what_is_there_together_as_one_chunk(
    inference_plane: ControlPlane,
) -> None:
    async with chat_stream(inference_plane) as (agent, connection, job_id):
        frame = protocol.Tokens(
            pieces=tuple(protocol.Token(job_id=job_id, text=t) for t in ("Hel", "lo", "!"))
        )
        inference_plane.scheduler.agent_message(agent, frame)
        first = await connection.receive()
        inference_plane.scheduler.agent_message(agent, protocol.Token(job_id=job_id, text=" Bye"))
        alone = await connection.receive()
        inference_plane.scheduler.agent_message(agent, done(job_id))
        last = await connection.receive()
    opening_and_pieces, piece, ending = data_of([first, alone, last])
    assert len(opening_and_pieces) == 4  # the opening, with the pieces that were there with it
    assert [chunk["choices"][0]["delta"] for chunk in opening_and_pieces] == [  # type: ignore[index]
        {"role": "assistant", "content": None},
        {"content": "Hel"},
        {"content": "lo"},
        {"content": "!"},
    ]
    assert [chunk["choices"][0]["delta"] for chunk in piece] == [{"content": " Bye"}]  # type: ignore[index]
    assert ending[0]["choices"][0]["finish_reason"] == "stop"  # type: ignore[index]
    assert ending[-1] == "[DONE]" and len(ending) == 2


async def test_a_client_that_leaves_a_coalescing_stream_cancels_its_job(
    inference_plane: ControlPlane,
) -> None:
    async with chat_stream(inference_plane) as (agent, connection, job_id):
        inference_plane.scheduler.agent_message(agent, protocol.Token(job_id=job_id, text="Hi"))
        await connection.receive()
        await connection.disconnect()
    assert protocol.Cancel(job_id=job_id) in sent(agent)
    assert inference_plane.scheduler.counters["withdrawn_client_disconnected"] == 1
