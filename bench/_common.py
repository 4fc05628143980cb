"""What the benchmarks share: the engine, concurrent streams and their timings, servers.

A stream is timed from the client's side: when it was sent, when each piece of text
arrived, how many tokens it got. The same :class:`StreamTrace` comes from the in-process
engine and from any OpenAI-compatible HTTP server, so every backend is measured alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import math
import os
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import httpx

import agent.engine.engine
from paddler.protocol import GenerationRequest, Usage
from tests.processes import Agent, ControlPlane, ServerProcess, wait_until

CORES = os.cpu_count() or 1


class BenchError(Exception):
    """A backend could not be measured (it did not start, or it answered with an error)."""


# the engine


class Result(Protocol):
    @property
    def usage(self) -> Usage: ...


class BenchEngine(Protocol):
    async def load(self) -> None: ...

    async def generate(
        self, request: GenerationRequest, on_text: Callable[[str], None], stop: threading.Event
    ) -> Result: ...

    def close(self) -> None: ...


def engine_class() -> type[Any]:
    """The agent's engine: ``Engine`` (continuous batching) or the older ``SimpleEngine``."""
    found: type[Any] | None = getattr(agent.engine, "Engine", None) or getattr(
        agent.engine, "SimpleEngine", None
    )
    if found is None:
        raise BenchError("agent.engine has neither Engine nor SimpleEngine")
    return found


def engine_accepts(option: str) -> bool:
    return option in inspect.signature(engine_class()).parameters


def make_engine(model: Path, slots: int, **options: Any) -> BenchEngine:
    """The agent's engine with the keyword ``options`` it accepts (others are left out)."""
    cls = engine_class()
    accepted = {key: value for key, value in options.items() if engine_accepts(key)}
    engine: BenchEngine = cls(model, slots, **accepted)
    return engine


# streams and their timings


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


async def engine_stream(engine: BenchEngine, request: GenerationRequest) -> StreamTrace:
    trace = StreamTrace(sent=time.perf_counter())
    result = await engine.generate(request, lambda _: trace.arrived(), threading.Event())
    trace.tokens = result.usage.completion_tokens
    trace.prompt_tokens = result.usage.prompt_tokens
    trace.cached_tokens = result.usage.cached_tokens
    return trace


async def engine_load(engine: BenchEngine, requests: Sequence[GenerationRequest]) -> Load:
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
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data:"))
            if "error" in chunk:
                raise BenchError(f"{what} sent an error in the stream: {chunk['error']}")
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if choice.get("text") or delta.get("content"):
                    trace.arrived()
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


# servers


class CommandServer(ServerProcess):
    """Any server command (``ServerProcess`` runs ``python -m paddler``), logging to a file."""

    def __init__(self, name: str, args: list[str], log_path: Path, ready_url: str) -> None:
        super().__init__(args, log_path)
        self.name = name
        self.ready_url = ready_url

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def wait_ready(self, timeout: float = 120.0) -> None:
        def ready() -> bool:
            if not self.running:
                return True
            try:
                return httpx.get(self.ready_url, timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        with contextlib.suppress(AssertionError):  # timed out: said below, with the log
            wait_until(ready, timeout=timeout, what=f"{self.name} at {self.ready_url}")
        if not self.running:
            raise start_failure(self.name, "exited while starting", self.log_path)
        if not ready():
            raise start_failure(
                self.name, f"did not answer {self.ready_url} in {timeout:.0f} s", self.log_path
            )


def log_tail(name: str, path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log from {name} at {path})"
    return f"--- last lines of {name}'s log ({path}) ---\n" + "\n".join(text)


def start_failure(name: str, what_happened: str, path: Path) -> BenchError:
    """A server did not start: its log's last line on the first line, then the log's tail."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    last = f": {lines[-1].strip()}" if lines else ""
    return BenchError(f"{name} {what_happened}{last}\n{log_tail(name, path)}")


@contextlib.contextmanager
def running(server: CommandServer, timeout: float = 120.0) -> Iterator[CommandServer]:
    """Start ``server``, wait until it answers, and always stop it afterwards."""
    try:
        server.start()
        server.wait_ready(timeout)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def control_plane(directory: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(directory, "--log-level", "warning")
    try:
        try:
            plane.start()
        except AssertionError:
            raise start_failure("the control plane", "did not start", plane.log_path) from None
        yield plane
    finally:
        plane.stop()


@contextlib.contextmanager
def paddler_agent(
    plane: ControlPlane,
    directory: Path,
    name: str,
    model: Path,
    *,
    slots: int,
    extra: Sequence[str] = (),
) -> Iterator[Agent]:
    """A real agent using every core (``extra``: more agent flags), ready in ``plane``."""
    agent_process = Agent(plane, directory, name, model, slots=slots, threads=CORES)
    agent_process.args += list(extra)  # argparse: the last of a repeated flag wins
    try:
        agent_process.start()

        def settled() -> bool:
            found = plane.agent(name)
            return not agent_process.running or (found is not None and found["state"] == "ready")

        with contextlib.suppress(AssertionError):  # timed out: said below, with the log
            wait_until(settled, timeout=120, what=f"agent {name} ready")
        found = plane.agent(name)
        if not agent_process.running or found is None or found["state"] != "ready":
            status = "exited" if not agent_process.running else "did not become ready in 120 s"
            raise start_failure(f"agent {name}", status, agent_process.log_path)
        yield agent_process
    finally:
        agent_process.stop()


class Interruption:
    """Ctrl-C, SIGTERM and SIGHUP unwind the benchmark (``finally`` blocks stop the servers).

    SIGINT raises KeyboardInterrupt at once, even inside ``asyncio.run`` (whose own handler
    would only cancel the running task, and lose the interrupt if the task failed first, as it
    does when the servers, in the same process group, die of the same Ctrl-C).
    """

    def __init__(self) -> None:
        self.signal: int | None = None

    def _raise(self, signum: int, _: FrameType | None) -> None:
        self.signal = signum
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    def check(self) -> None:
        """Raise again if a signal came but its exception was swallowed on the way."""
        if self.signal == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signal is not None:
            raise SystemExit(128 + self.signal)

    @contextlib.contextmanager
    def installed(self) -> Iterator[Interruption]:
        signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {sig: signal.signal(sig, self._raise) for sig in signals}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
