"""Server-Sent Events: how events and comments are written, and the response that streams them."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable

from quart import Response

# Proxies must pass each event on as it is written (nginx buffers unless told not to).
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

# A slow client's backlog goes out in chunks of about this size (asyncio's default high-water
# mark of a transport's buffer), each written before more is read off the queue, so a long
# backlog neither sits whole in memory twice nor holds the event loop.
CHUNK_LIMIT = 64 * 1024


def event(data: str, name: str | None = None) -> bytes:
    """One event; each line of ``data`` becomes a ``data:`` line."""
    head = f"event: {name}\n" if name is not None else ""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"{head}{lines}\n".encode()


def json_event(data: bytes, name: str | None = None) -> bytes:
    """One event whose data is compact JSON, which is one line (JSON escapes newlines)."""
    head = b"event: " + name.encode() + b"\n" if name is not None else b""
    return head + b"data: " + data + b"\n\n"


def comment(text: str) -> bytes:
    """A comment, which clients ignore; handy as a keep-alive."""
    if text.isprintable():  # no line break of any kind: one line, the usual case, made quickly
        return f": {text}\n\n".encode()
    lines = "".join(f": {line}\n" for line in text.splitlines() or [""])
    return f"{lines}\n".encode()


def streaming_response(
    events: AsyncIterable[bytes], *, ready: Callable[[], bool] | None = None
) -> Response:
    """A ``text/event-stream`` response that may stay open for as long as ``events`` runs.

    With ``ready``, events that are there together go out together (see ``coalesced``)."""
    body = events if ready is None else coalesced(events, ready)
    response = Response(body, mimetype="text/event-stream", headers=HEADERS)
    response.timeout = None
    return response


async def coalesced(
    events: AsyncIterable[bytes], ready: Callable[[], bool], *, limit: int = CHUNK_LIMIT
) -> AsyncGenerator[bytes, None]:
    """``events``, written back to back as one body chunk when they are there together.

    After each event, while ``ready()`` says the next one comes without waiting, it is taken
    too (up to about ``limit`` bytes); then all go out as one chunk, whose bytes are those of
    the events in order. Each chunk costs the server a write and a pass through the ASGI and
    HTTP layers however small it is, so a stream whose client or agent runs ahead writes far
    fewer. An event that is there alone goes out at once: nothing waits for a timer or for
    company. ``ready`` must not say yes when taking the next event would wait, or what is
    held waits with it. Closing this closes ``events`` (the stream's clean-up runs at once).
    """
    source = aiter(events)
    try:
        async for first in source:
            if not ready():
                yield first
                continue
            parts, size = [first], len(first)
            while size < limit and ready():
                try:
                    part = await anext(source)
                except StopAsyncIteration:
                    yield b"".join(parts)
                    return
                parts.append(part)
                size += len(part)
            yield b"".join(parts)
    finally:
        if isinstance(source, AsyncGenerator):
            await source.aclose()
