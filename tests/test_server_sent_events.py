"""The Server-Sent Events wire format both the inference API and the dashboard stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

from quart import Quart

from control_plane import server_sent_events


def test_an_event_sends_each_line_of_its_data() -> None:
    assert server_sent_events.event("[DONE]") == b"data: [DONE]\n\n"
    assert server_sent_events.event("<p>\n</p>", "fragment") == (
        b"event: fragment\ndata: <p>\ndata: </p>\n\n"
    )


def test_a_comment_may_span_lines() -> None:
    assert server_sent_events.comment("keep-alive") == b": keep-alive\n\n"
    assert server_sent_events.comment("two\nlines") == b": two\n: lines\n\n"
    assert server_sent_events.comment("") == b": \n\n"


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
