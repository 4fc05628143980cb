"""The HTTP measurements of bench/admission.py: non-streamed chat completions of 16 tokens to a
target, at c=1 beside the open API (request by request, in turns) or alone in a closed loop
at c=16, every answer checked.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from random import random

from bench._adm_planes import pid_of
from bench._cp_load import _Client, connect, request_bytes
from bench._cp_processes import CpuMeter
from bench._streams import percentile
from tests.processes import ControlPlane

TOKENS = 16
POOL = "bench"
PATH = "/v1/chat/completions"
CONCURRENCIES = (1, 16)


@dataclass
class Target:
    name: str
    plane: ControlPlane
    requests: list[bytes]  # asked in turn, across connections and rounds
    turn: int = 0

    def next_request(self) -> bytes:
        self.turn += 1
        return self.requests[(self.turn - 1) % len(self.requests)]

    @property
    def port(self) -> int:
        return self.plane.inference_port


@dataclass
class Measure:
    """One target at one concurrency, over every round."""

    latencies: list[float] = field(default_factory=list)
    answers: int = 0  # warm-up included
    bad: int = 0  # answers that were not 200 with TOKENS completion tokens
    first_bad: str = ""
    seconds: float = 0.0  # counted seconds (c=16), summed over rounds
    cpu_seconds: float = 0.0  # the control plane's, in the counted seconds (c=16)
    round_p50s: list[float] = field(default_factory=list)
    paired: list[float] = field(default_factory=list)  # c=1: minus the open API's beside it

    @property
    def rps(self) -> float:
        """Answers per second: counted ones over counted seconds in a closed loop; at c=1,
        where targets take turns, 1 / the mean latency."""
        if self.seconds:
            return len(self.latencies) / self.seconds
        return len(self.latencies) / sum(self.latencies) if self.latencies else 0.0

    @property
    def cpu_per_request(self) -> float:
        return self.cpu_seconds / len(self.latencies) if self.seconds and self.latencies else 0.0

    def answered(self, status: int, answer: bytes) -> bool:
        """Count an answer; whether it was a good one."""
        self.answers += 1
        if status == 200 and f'"completion_tokens":{TOKENS}'.encode() in answer.replace(b" ", b""):
            return True
        self.bad += 1
        self.first_bad = self.first_bad or answer[:300].decode(errors="replace")
        return False

    def add(self, part: Measure) -> None:
        self.latencies += part.latencies
        self.answers += part.answers
        self.bad += part.bad
        self.first_bad = self.first_bad or part.first_bad
        self.seconds += part.seconds
        self.cpu_seconds += part.cpu_seconds
        self.round_p50s.append(percentile(part.latencies, 0.5))
        self.paired += part.paired


Measures = dict[tuple[str, int], Measure]  # by target name and concurrency


def chat_request(port: int, secret: str) -> bytes:
    body: dict[str, object] = {
        "model": POOL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": TOKENS,
    }
    return request_bytes(f"127.0.0.1:{port}", PATH, body, secret)


class Connection:
    """A keep-alive connection to a target, dialled again when the server closed it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._client: _Client | None = None

    async def ask(self, request: bytes) -> tuple[int, bytes]:
        while True:
            if self._client is None or self._client.closed:
                self._client = await connect("127.0.0.1", self.port)
            try:
                return await self._client.ask(request)
            except ConnectionError:
                continue  # closed between two requests: that one is asked again

    def close(self) -> None:
        if self._client is not None and self._client._transport is not None:
            self._client._transport.close()


def answer_of(plane: ControlPlane, request: bytes) -> tuple[int, bytes]:
    async def ask() -> tuple[int, bytes]:
        connection = Connection(plane.inference_port)
        try:
            return await connection.ask(request)
        finally:
            connection.close()

    return asyncio.run(ask())


async def side_by_side(
    base: Target, other: Target, seconds: float, warmup: float
) -> tuple[Measure, Measure]:
    """c=1 for two targets at once: a request to each in turn (which goes first drawn at
    random) for ``warmup`` + ``seconds``; every answer is checked, those after the warm-up
    timed, and each pair's difference (``other`` minus ``base``) kept in ``other.paired``."""
    targets = (base, other)
    connections = [Connection(target.port) for target in targets]
    measures = (Measure(), Measure())
    counting_from = time.perf_counter() + warmup
    stop_at = counting_from + seconds
    try:
        while time.perf_counter() < stop_at:
            pair = [0.0, 0.0]
            for index in (0, 1) if random() < 0.5 else (1, 0):
                sent = time.perf_counter()
                status, answer = await connections[index].ask(targets[index].next_request())
                elapsed = time.perf_counter() - sent
                if measures[index].answered(status, answer) and sent >= counting_from:
                    measures[index].latencies.append(elapsed)
                    pair[index] = elapsed
            if pair[0] and pair[1]:
                measures[1].paired.append(pair[1] - pair[0])
    finally:
        for connection in connections:
            connection.close()
    return measures


async def closed_loop(target: Target, concurrency: int, seconds: float, warmup: float) -> Measure:
    """``concurrency`` connections asking the target again and again for ``warmup`` +
    ``seconds``, with the control plane's CPU over the counted seconds; every answer is
    checked, those sent and answered within the counted seconds timed."""
    connections = [Connection(target.port) for _ in range(concurrency)]
    measure = Measure(seconds=seconds)
    meter = CpuMeter(pid_of(target.plane))
    counting_from = time.perf_counter() + warmup
    stop_at = counting_from + seconds

    async def metering() -> None:
        await asyncio.sleep(max(0.0, counting_from - time.perf_counter()))
        meter.start()
        await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
        measure.cpu_seconds = meter.stop() * seconds

    async def loop(connection: Connection) -> None:
        while (sent := time.perf_counter()) < stop_at:
            status, answer = await connection.ask(target.next_request())
            now = time.perf_counter()
            if measure.answered(status, answer) and counting_from <= sent and now <= stop_at:
                measure.latencies.append(now - sent)

    try:
        await asyncio.gather(metering(), *(loop(connection) for connection in connections))
    finally:
        for connection in connections:
            connection.close()
    return measure
