"""A mock OpenAI server on raw asyncio, for bench/control_plane.py: the ceiling a Python server
can reach on this machine, and the model LiteLLM's proxy is put in front of.

It answers every ``POST .../chat/completions`` at once with a 16-token answer, streamed (SSE,
chunked) when the body asks for ``"stream": true``, else as one JSON object; anything else is
a 404. HTTP/1.1 keep-alive; no other HTTP feature.

    python bench/_cp_mock_upstream.py --port 8090
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re

TOKENS = 16
_STREAM = re.compile(rb'"stream"\s*:\s*true')
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _event(delta: dict[str, str], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "mock",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


_STREAM_BODY = b"".join(
    [
        _chunk(_event({"role": "assistant", "content": ""})),
        *(_chunk(_event({"content": "tok "})) for _ in range(TOKENS)),
        _chunk(_event({}, "length")),
        _chunk(b"data: [DONE]\n\n"),
        b"0\r\n\r\n",
    ]
)
STREAM_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\n\r\n" + _STREAM_BODY
)
_WHOLE = json.dumps(
    {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": "mock",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "tok " * TOKENS},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 8, "completion_tokens": TOKENS, "total_tokens": TOKENS + 8},
    }
).encode()
WHOLE_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
    % (len(_WHOLE), _WHOLE)
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


class MockOpenAI(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end]
            found = _LENGTH.search(head)
            length = int(found.group(1)) if found else 0
            if len(self._buffer) < end + 4 + length:
                return
            body = self._buffer[end + 4 : end + 4 + length]
            self._buffer = self._buffer[end + 4 + length :]
            assert self._transport is not None
            self._transport.write(self._answer(head, body))

    @staticmethod
    def _answer(head: bytes, body: bytes) -> bytes:
        if not head.startswith(b"POST") or b"/chat/completions" not in head.split(b"\r\n")[0]:
            return NOT_FOUND
        return STREAM_RESPONSE if _STREAM.search(body) else WHOLE_RESPONSE


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(MockOpenAI, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))
