"""Server-Sent Events: how events and comments are written, and the response that streams them."""

from __future__ import annotations

from collections.abc import AsyncIterable

from quart import Response

# Proxies must pass each event on as it is written (nginx buffers unless told not to).
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(data: str, name: str | None = None) -> bytes:
    """One event; each line of ``data`` becomes a ``data:`` line."""
    head = f"event: {name}\n" if name is not None else ""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"{head}{lines}\n".encode()


def comment(text: str) -> bytes:
    """A comment, which clients ignore; handy as a keep-alive."""
    lines = "".join(f": {line}\n" for line in text.splitlines() or [""])
    return f"{lines}\n".encode()


def streaming_response(events: AsyncIterable[bytes]) -> Response:
    """A ``text/event-stream`` response that may stay open for as long as ``events`` runs."""
    response = Response(events, mimetype="text/event-stream", headers=HEADERS)
    response.timeout = None
    return response
