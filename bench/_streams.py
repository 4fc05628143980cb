"""Concurrent streams and their timings, from the in-process engine or over HTTP.

A stream is timed from the client's side: when it was sent, when each piece of text
arrived, how many tokens it got. The same :class:`StreamTrace` comes from the in-process
engine and from any OpenAI-compatible HTTP server, so every backend is measured alike.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from agent.engine.engine import Engine
from bench._cp_load import request_bytes
from bench._errors import BenchError
from paddler.protocol import GenerationRequest


@dataclass
class StreamTrace:
    """One stream as its client saw it (times are ``time.perf_counter()``)."""

    sent: float
    arrivals: list[float] = field(default_factory=list)  # when each piece of text came
    tokens: int = 0  # completion tokens: the server's usage, else the pieces of text
    prompt_tokens: int = 0
    cached_tokens: int = 0

    def arrived(self) -> None:
        self.arrivals.append(time.perf_counter())

    @property
    def first_token(self) -> float:
        """Seconds from sending to the first text."""
        if not self.arrivals:
            raise BenchError("a stream produced no text")
        return self.arrivals[0] - self.sent

    def gaps(self) -> list[float]:
        return [
            later - earlier
            for earlier, later in zip(self.arrivals, self.arrivals[1:], strict=False)
        ]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile (``fraction`` 0.95 for p95); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Load:
    """Concurrent streams run together, and what they add up to."""

    traces: list[StreamTrace]

    @property
    def streams(self) -> int:
        return len(self.traces)

    @property
    def tokens(self) -> int:
        return sum(trace.tokens for trace in self.traces)

    @property
    def elapsed(self) -> float:
        return max(trace.arrivals[-1] for trace in self.traces) - min(
            trace.sent for trace in self.traces
        )

    @property
    def tokens_per_second(self) -> float:
        """All tokens over the whole run, prompts included."""
        return self.tokens / self.elapsed

    @property
    def decode_tokens_per_second(self) -> float:
        """Tokens after each stream's first, over the span from the first token to the end."""
        start = min(trace.arrivals[0] for trace in self.traces)
        end = max(trace.arrivals[-1] for trace in self.traces)
        return sum(max(0, trace.tokens - 1) for trace in self.traces) / (end - start)

    def gaps(self) -> list[float]:
        return [gap for trace in self.traces for gap in trace.gaps()]

    @property
    def mean_first_token(self) -> float:
        return statistics.mean(trace.first_token for trace in self.traces)


async def engine_stream(engine: Engine, request: GenerationRequest) -> StreamTrace:
    trace = StreamTrace(sent=time.perf_counter())
    result = await engine.generate(request, lambda _: trace.arrived(), threading.Event())
    trace.tokens = result.usage.completion_tokens
    trace.prompt_tokens = result.usage.prompt_tokens
    trace.cached_tokens = result.usage.cached_tokens
    return trace


async def engine_load(engine: Engine, requests: Sequence[GenerationRequest]) -> Load:
    return Load(list(await asyncio.gather(*(engine_stream(engine, r) for r in requests))))


async def http_stream(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], *, what: str
) -> StreamTrace:
    """POST an OpenAI streaming request (chat or completions) and time its text chunks."""
    trace = StreamTrace(sent=time.perf_counter())
    usage: dict[str, Any] | None = None
    async with client.stream("POST", path, json=body) as response:
        if response.status_code != 200:
            text = (await response.aread()).decode(errors="replace")
            raise BenchError(f"{what} answered {response.status_code}: {text[:500]}")
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                usage = _event(trace, line.removeprefix("data:"), what) or usage
    return _counted(trace, usage, what)


async def lean_http_stream(
    host: str, port: int, path: str, body: dict[str, Any], *, what: str
) -> StreamTrace:
    """``http_stream`` on a bare asyncio connection: what a client costs (httpx spends about
    320 µs of CPU on each streamed token) must not weigh on a server sharing its cores."""
    reader, writer = await asyncio.open_connection(host, port)
    trace = StreamTrace(sent=time.perf_counter())
    usage: dict[str, Any] | None = None
    try:
        writer.write(request_bytes(f"{host}:{port}", path, body))
        head = (await reader.readuntil(b"\r\n\r\n")).lower()
        if not head.startswith(b"http/1.1 200"):
            raise BenchError(f"{what} answered {head[:12].decode()}: {(await reader.read(500))!r}")
        if b"transfer-encoding: chunked" not in head:
            raise BenchError(f"{what} did not stream its answer")
        pending = b""
        while size := int(await reader.readuntil(b"\r\n"), 16):
            pending += (await reader.readexactly(size + 2))[:-2]
            *events, pending = pending.split(b"\n\n")
            for line in (line for event in events for line in event.split(b"\n")):
                if line.startswith(b"data:"):
                    usage = _event(trace, line[5:].decode(), what) or usage
    finally:
        writer.close()
    return _counted(trace, usage, what)


def _event(trace: StreamTrace, data: str, what: str) -> dict[str, Any] | None:
    """Take one event's data: note when text came; the usage it carries, if any."""
    if data.strip() == "[DONE]":
        return None
    chunk = json.loads(data)
    if "error" in chunk:
        raise BenchError(f"{what} sent an error in the stream: {chunk['error']}")
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if choice.get("text") or delta.get("content"):
            trace.arrived()
    usage: dict[str, Any] | None = chunk.get("usage")
    return usage


def _counted(trace: StreamTrace, usage: dict[str, Any] | None, what: str) -> StreamTrace:
    """``trace`` with its tokens: the server's usage, else the pieces of text."""
    if usage and usage.get("completion_tokens"):
        trace.tokens = int(usage["completion_tokens"])
        trace.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        details = usage.get("prompt_tokens_details") or {}
        trace.cached_tokens = int(details.get("cached_tokens") or 0)
    else:
        trace.tokens = len(trace.arrivals)
    if not trace.arrivals:
        raise BenchError(f"{what} streamed no text")
    return trace


async def http_load(
    base_url: str, path: str, bodies: Sequence[dict[str, Any]], *, what: str
) -> Load:
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
        traces = await asyncio.gather(*(http_stream(client, path, b, what=what) for b in bodies))
    return Load(list(traces))


async def lean_http_load(
    host: str, port: int, path: str, bodies: Sequence[dict[str, Any]], *, what: str
) -> Load:
    streams = (lean_http_stream(host, port, path, body, what=what) for body in bodies)
    return Load(list(await asyncio.gather(*streams)))
