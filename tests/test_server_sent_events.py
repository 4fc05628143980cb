"""The Server-Sent Events wire format both the inference API and the dashboard stream, and
the coalescing of a stream's events that are there together into one chunk."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from quart import Quart

from control_plane import json_bodies, server_sent_events


def test_an_event_sends_each_line_of_its_data() -> None:
    assert server_sent_events.event("[DONE]") == b"data: [DONE]\n\n"
    assert server_sent_events.event("<p>\n</p>", "fragment") == (
        b"event: fragment\ndata: <p>\ndata: </p>\n\n"
    )


@given(
    st.dictionaries(
        st.text(),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
            lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
            max_leaves=8,
        ),
    ),
    st.none() | st.sampled_from(["response.output_text.delta", "error"]),
)
def test_a_json_event_is_one_data_line_a_client_decodes_back(
    data: dict[str, object], name: str | None
) -> None:
    written = server_sent_events.json_event(json_bodies.dumps(data), name)
    head = f"event: {name}\n".encode() if name is not None else b""
    assert written.startswith(head + b"data: ") and written.endswith(b"\n\n")
    line = written[len(head) : -2]
    assert b"\n" not in line and b"\r" not in line  # texts' newlines stay escaped
    assert json.loads(line.removeprefix(b"data: ")) == data


def test_json_has_no_nan_or_infinity_which_clients_cannot_parse() -> None:
    assert json.loads(json_bodies.dumps({"logprob": float("-inf"), "x": float("nan")})) == {
        "logprob": None,
        "x": None,
    }


def test_a_comment_may_span_lines() -> None:
    assert server_sent_events.comment("keep-alive") == b": keep-alive\n\n"
    assert server_sent_events.comment("two\nlines") == b": two\n: lines\n\n"
    assert server_sent_events.comment("") == b": \n\n"
    # every line break Python knows ends a comment line, never only some of them
    assert server_sent_events.comment("a\r\nb\u2028c\td") == b": a\n: b\n: c\td\n\n"


async def test_the_response_streams_unbuffered_without_a_timeout() -> None:
    async def events() -> AsyncIterator[bytes]:
        yield server_sent_events.event("one")

    async with Quart(__name__).app_context():
        response = server_sent_events.streaming_response(events())
        assert response.mimetype == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["X-Accel-Buffering"] == "no"
        assert response.timeout is None
        assert await response.get_data() == b"data: one\n\n"


# -- coalescing: events there together go out as one chunk ------------------------------------

END = b"end"  # put in the queue: the events end


async def queued_events(queue: asyncio.Queue[bytes], cleaned: list[str]) -> AsyncIterator[bytes]:
    """Events as a stream makes them: each as it comes off ``queue``, as a relay's do."""
    try:
        while (item := await queue.get()) != END:
            yield item
    finally:
        cleaned.append("withdrawn")


def ready_when_queued(queue: asyncio.Queue[bytes]) -> Callable[[], bool]:
    return lambda: not queue.empty()


async def settled() -> None:
    """Let every task that can run, run (no clock involved)."""
    for _ in range(10):
        await asyncio.sleep(0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.binary(min_size=1, max_size=12), min_size=1, max_size=6),
        min_size=1,
        max_size=8,
    )
)
async def test_events_there_together_go_out_as_one_chunk_byte_for_byte(
    arrivals: list[list[bytes]],
) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    cleaned: list[str] = []
    stream = server_sent_events.coalesced(queued_events(queue, cleaned), ready_when_queued(queue))
    chunks = []
    for arrival in arrivals:  # what the agent sent at once, then the stream is written
        for item in arrival:
            queue.put_nowait(item)
        chunks.append(await anext(stream))
    queue.put_nowait(END)
    assert [chunk async for chunk in stream] == []
    assert chunks == [b"".join(arrival) for arrival in arrivals]
    assert b"".join(chunks) == b"".join(item for arrival in arrivals for item in arrival)
    assert cleaned == ["withdrawn"]


async def test_a_long_backlog_goes_out_in_chunks_of_about_the_limit() -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    items = [bytes([65 + n % 26]) * 10 for n in range(100)]
    for item in [*items, END]:
        queue.put_nowait(item)
    stream = server_sent_events.coalesced(
        queued_events(queue, []), ready_when_queued(queue), limit=95
    )
    chunks = [chunk async for chunk in stream]
    assert b"".join(chunks) == b"".join(items)
    assert [len(chunk) for chunk in chunks] == [100] * 10  # the event that reaches the limit too


async def test_an_event_there_alone_goes_out_at_once() -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    stream = server_sent_events.coalesced(queued_events(queue, []), ready_when_queued(queue))
    waiting = asyncio.ensure_future(anext(stream))
    await settled()
    assert not waiting.done()  # nothing to write yet
    queue.put_nowait(b"one")
    await settled()
    assert waiting.done() and waiting.result() == b"one"  # not held for a second one
    queue.put_nowait(b"two")
    queue.put_nowait(END)
    assert [chunk async for chunk in stream] == [b"two"]


async def test_the_last_events_go_out_with_the_end() -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for item in (b"a", b"b", END):
        queue.put_nowait(item)
    stream = server_sent_events.coalesced(queued_events(queue, []), ready_when_queued(queue))
    assert [chunk async for chunk in stream] == [b"ab"]


async def test_closing_the_response_stream_cleans_up_its_events() -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    cleaned: list[str] = []
    stream = server_sent_events.coalesced(queued_events(queue, cleaned), ready_when_queued(queue))
    queue.put_nowait(b"one")
    assert await anext(stream) == b"one"
    await stream.aclose()  # the server closes the body of a client that left
    assert cleaned == ["withdrawn"]


async def test_a_cancelled_response_stream_cleans_up_its_events() -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    cleaned: list[str] = []
    stream = server_sent_events.coalesced(queued_events(queue, cleaned), ready_when_queued(queue))
    waiting = asyncio.ensure_future(anext(stream))
    await settled()
    waiting.cancel()  # the client left while the stream waited for its agent
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert cleaned == ["withdrawn"]


async def test_a_coalescing_response_sends_the_same_bytes() -> None:
    async def events() -> AsyncIterator[bytes]:
        for text in ("one", "two", "[DONE]"):
            yield server_sent_events.event(text)

    async with Quart(__name__).app_context():
        response = server_sent_events.streaming_response(events(), ready=lambda: True)
        assert response.timeout is None
        assert await response.get_data() == b"data: one\n\ndata: two\n\ndata: [DONE]\n\n"
