"""The buffer figure of bench/control_plane.py: many streams waiting for an agent that is still
loading, then served by it once it is ready.

Each waiter's first ``: queued position=P`` comment says where it was admitted; the fake agent
numbers the jobs as they reach it (the ``#N`` of the first token). Served in order means N
grows with P; lost means a stream that did not end with ``[DONE]`` and its ``#N``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import statistics
import time
from dataclasses import dataclass, field

from bench._cp_load import request_bytes

_QUEUED = re.compile(rb": queued position=(\d+)")
_SEQUENCE = re.compile(rb'"content":\s*"#(\d+) ')


@dataclass
class Waiter:
    position: int = 0
    admitted_at: float = 0.0
    reports: list[float] = field(default_factory=list)  # when each ``: queued`` came
    sequence: int = 0  # the fake agent's number for this job
    done: bool = False
    error: str = ""


@dataclass
class BufferFigure:
    waiters: int
    admitted: int
    admission_seconds: float
    rss_before: int
    rss_waiting: int
    rss_drained: int
    cpu_admitting: float  # share of one core while they come in
    cpu_waiting: float  # share of one core while they wait
    report_interval: float
    intervals: list[float]
    in_order: bool
    lost: int
    drain_seconds: float
    first_job_after_ready: float | None = None

    def lines(self) -> list[str]:
        mib = 1024 * 1024
        growth = (self.rss_waiting - self.rss_before) / mib
        mean = statistics.fmean(self.intervals) if self.intervals else float("nan")
        late = sorted(self.intervals)[int(len(self.intervals) * 0.99)] if self.intervals else 0
        return [
            f"waiters                 {self.waiters}",
            f"RSS growth              {growth:.1f} MiB ({growth * mib / self.waiters / 1024:.1f}"
            f" KiB each); after draining {(self.rss_drained - self.rss_before) / mib:+.1f} MiB",
            f"admission               {self.admitted / self.admission_seconds:,.0f}/s "
            f"({self.admitted} of {self.waiters} in {self.admission_seconds:.2f} s, "
            f"CPU {self.cpu_admitting * 100:.0f}% of a core)",
            f"report interval         {self.report_interval:.1f} s set; while all wait: "
            f"mean {mean:.2f} s, p99 {late:.2f} s ({late / self.report_interval - 1:+.0%})",
            f"CPU while waiting       {self.cpu_waiting * 100:.1f}% of a core",
            f"served in FIFO order    {'yes' if self.in_order else 'NO'}; lost {self.lost}",
            f"drained in              {self.drain_seconds:.2f} s"
            + (
                f"; first job {self.first_job_after_ready * 1000:.1f} ms after ready"
                if self.first_job_after_ready is not None
                else ""
            ),
        ]


async def _wait(
    port: int,
    request: bytes,
    waiter: Waiter,
    admitted: asyncio.Event,
    counter: list[int],
    connecting: asyncio.Semaphore,
) -> None:
    await connecting.acquire()  # a few at a time, each until it is admitted
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as error:
        connecting.release()
        waiter.error = f"could not connect: {error}"
        return
    writer.write(request)
    seen = b""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            now = time.perf_counter()
            seen = seen[-200:] + data
            for found in _QUEUED.finditer(data):
                if not waiter.position:
                    connecting.release()
                    waiter.position = int(found.group(1))
                    waiter.admitted_at = now
                    counter[0] += 1
                    if counter[0] == counter[1]:
                        admitted.set()
                waiter.reports.append(now)
            sequence = _SEQUENCE.search(data)
            if sequence:
                waiter.sequence = int(sequence.group(1))
            if b"data: [DONE]" in seen:
                waiter.done = True
                return
    except OSError as error:
        waiter.error = str(error)
    finally:
        if not waiter.position:
            connecting.release()
        writer.close()


async def measure(
    port: int,
    pid: int,
    waiters: int,
    report_interval: float,
    wait_seconds: float,
    release: object,
) -> tuple[list[Waiter], dict[str, float]]:
    """Open ``waiters`` streams, let them wait ``wait_seconds``, then call ``release()``;
    returns the waiters and the timings and process readings taken along the way."""
    from bench._cp_processes import CpuMeter, rss_bytes

    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "stream": True,
    }
    request = request_bytes(f"127.0.0.1:{port}", "/v1/chat/completions", body)
    everyone = [Waiter() for _ in range(waiters)]
    admitted = asyncio.Event()
    counter = [0, waiters]
    readings: dict[str, float] = {"rss_before": rss_bytes(pid)}
    started = time.perf_counter()
    admitting = CpuMeter(pid)
    admitting.start()
    tasks = []
    connecting = asyncio.Semaphore(64)
    for waiter in everyone:  # one after another: admission order is the order sent
        tasks.append(
            asyncio.create_task(_wait(port, request, waiter, admitted, counter, connecting))
        )
        await asyncio.sleep(0)
    while not admitted.is_set():  # until all are in, or admission makes no progress for 30 s
        before = counter[0]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(admitted.wait(), 30)
        if counter[0] == before:
            break
    readings["admitted"] = counter[0]
    readings["cpu_admitting"] = admitting.stop()
    readings["admission_seconds"] = max(w.admitted_at for w in everyone) - started
    readings["all_admitted_at"] = time.perf_counter()
    meter = CpuMeter(pid)
    meter.start()
    await asyncio.sleep(wait_seconds)
    readings["cpu_waiting"] = meter.stop()
    readings["rss_waiting"] = rss_bytes(pid)
    released = time.perf_counter()
    readings["released_at"] = released
    assert callable(release)
    release()
    await asyncio.wait(tasks, timeout=600)
    readings["drain_seconds"] = time.perf_counter() - released
    await asyncio.sleep(1.0)
    readings["rss_drained"] = rss_bytes(pid)
    return everyone, readings


def in_order(waiters: list[Waiter]) -> bool:
    ordered = sorted(waiters, key=lambda waiter: waiter.position)
    sequence = [waiter.sequence for waiter in ordered]
    return all(a < b for a, b in itertools.pairwise(sequence))


def report_gaps(waiters: list[Waiter], since: float, until: float) -> list[float]:
    """The gaps between a waiter's ``: queued`` comments while all of them waited."""
    gaps = []
    for waiter in waiters:
        times = [moment for moment in waiter.reports if since <= moment <= until]
        gaps += [later - earlier for earlier, later in itertools.pairwise(times)]
    return gaps
