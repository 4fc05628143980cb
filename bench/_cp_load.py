"""A closed-loop HTTP/1.1 load generator on raw asyncio, cheap enough not to be what limits
bench/control_plane.py (there is no wrk here): each of ``c`` keep-alive connections sends a
request, reads the whole answer (Content-Length or chunked), and sends the next.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from bench._errors import BenchError


@dataclass
class Outcome:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    pieces: int = 0  # streamed pieces of text received while counting
    chunks: int = 0  # body chunks (HTTP/1.1 chunked encoding) of the answers counted
    reconnects: int = 0
    failures: int = 0
    first_failure: str = ""

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    @property
    def chunks_per_answer(self) -> float:
        """The server's writes per answer, as the client sees them (the last, empty one too)."""
        return self.chunks / len(self.latencies) if self.latencies else 0.0


def body_chunks(answer: bytes) -> int:
    """How many chunks a chunked answer came in (1 for one with a Content-Length): each is
    ``size CRLF data CRLF``, and event streams never hold a CR of their own."""
    head_end = answer.find(b"\r\n\r\n") + 4
    if b"transfer-encoding: chunked" not in answer[:head_end].lower():
        return 1
    return answer.count(b"\r\n", head_end) // 2


def request_bytes(host: str, path: str, body: dict[str, object], token: str = "") -> bytes:
    payload = json.dumps(body).encode()
    auth = f"authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"{auth}content-length: {len(payload)}\r\n\r\n"
    ).encode() + payload


class _Client(asyncio.Protocol):
    """One connection; ``ask`` sends a request and resolves with (status, raw answer)."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._head_end = -1
        self._length = -1  # Content-Length, or -1: chunked
        self.pieces = 0  # streamed pieces of text received (``"content":`` in events)
        self.closed = False  # by the server (which may end a keep-alive connection)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(ConnectionError(f"connection lost: {exc}"))

    def ask(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self._transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._buffer.clear()
        self._head_end = -1
        self._transport.write(request)
        return self._answer

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        self.pieces += data.count(b'"content":"') + data.count(b'"content": "')
        if self._head_end < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self._head_end = end + 4
            head = bytes(buffer[:end]).lower()
            start = head.find(b"content-length:")
            self._length = -1
            if start >= 0:
                line_end = head.find(b"\r\n", start)
                self._length = int(head[start + 15 : line_end if line_end > 0 else None])
        if self._length >= 0:
            complete = len(buffer) >= self._head_end + self._length
        else:
            complete = buffer.endswith(b"\r\n0\r\n\r\n")
        if complete and self._answer is not None and not self._answer.done():
            status = int(buffer[9:12])
            self._answer.set_result((status, bytes(buffer)))


async def connect(host: str, port: int) -> _Client:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(_Client, host, port)
    return client


async def closed_loop(
    host: str, port: int, request: bytes, concurrency: int, seconds: float, warmup: float = 0.5
) -> Outcome:
    """``concurrency`` connections asking ``request`` again and again for ``seconds``
    (after ``warmup`` seconds whose answers are not counted)."""
    clients = [await connect(host, port) for _ in range(concurrency)]
    started = time.perf_counter()
    counting_from = started + warmup
    stop_at = counting_from + seconds
    outcome = Outcome(seconds)
    retired = [0]  # pieces counted by connections the server closed

    async def count_pieces() -> None:
        await asyncio.sleep(max(0.0, counting_from - time.perf_counter()))
        before = retired[0] + sum(client.pieces for client in clients)
        await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
        outcome.pieces = retired[0] + sum(client.pieces for client in clients) - before

    async def loop(index: int) -> None:
        while True:
            sent = time.perf_counter()
            if sent >= stop_at:
                return
            if clients[index].closed:  # as a browser or wrk would: dial again
                retired[0] += clients[index].pieces
                clients[index] = await connect(host, port)
                outcome.reconnects += 1
            try:
                status, answer = await clients[index].ask(request)
            except ConnectionError:
                continue  # closed between two requests: that one is asked again
            now = time.perf_counter()
            if sent < counting_from:
                continue
            if status != 200 or b'"error"' in answer:
                outcome.failures += 1
                outcome.first_failure = outcome.first_failure or answer[:400].decode(
                    errors="replace"
                )
                await asyncio.sleep(0.01)
                continue
            outcome.latencies.append(now - sent)
            outcome.chunks += body_chunks(answer)

    try:
        await asyncio.gather(count_pieces(), *(loop(index) for index in range(concurrency)))
    except ConnectionError as error:
        raise BenchError(f"a load connection failed: {error}") from error
    finally:
        for client in clients:
            if client._transport is not None:
                client._transport.close()
    return outcome
