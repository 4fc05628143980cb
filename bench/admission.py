"""Admission with 10,000 API keys in the table: the latency a key check adds (issue 13).

Two control planes run side by side, each with a fake agent (bench/_cp_fake_agent.py, the real
protocol, 16 tokens at once): one with the open API (no key rows), one whose state database
was given 10,000 keys (KeyStore.bulk_create) before it started. Every key has requests and
tokens per minute and a daily token budget, set far too high to refuse, so every check of
admission runs. Three targets, non-streamed chat completions of 16 tokens:

  open        the open API, no key
  1 key       the 10,000-key plane, every request with the same key
  1,000 keys  the 10,000-key plane, requests spread round-robin over 1,000 of its keys

Each round: at c=1 the open API and one keyed target take turns request by request (which
goes first drawn at random), for each keyed target, so both see the same moment of a shared
machine; then each target alone at c=16 (order rotating by round), with the control plane's
CPU per request from /proc (its background sync included). c=1 RPS is 1 / mean latency.
Both control planes are pinned to one CPU, this client and the fake agents to the others
(``--no-pin``: not), so that the machine's other work slows both planes alike.

Printed: p50/p99 and RPS; the p50 each keyed target adds over the open API measured beside it
(ms and ratio, per-round range, median of paired differences); admission alone in this
process (authenticate + Tenancy.admit + settle, no HTTP); the control planes' RSS with 10,000
keys and with none; the time each took to start (to /health: the keys are read before it
answers; both on a migrated database; best of --starts) and to read the keys into a
KeyDirectory; that every answer was 200 with 16 tokens (the warm-ups' too); and the keys with
usage rows in GET /api/v1/usage against those used.

The keys are made with ``updated_at`` a minute in the past: a replica re-reads the keys changed
in the last 5 s at every sync (directory.py, REFRESH_OVERLAP), which right after a bulk
creation is all 10,000 of them twice a second for 5 s; steady state is what is measured here.
The machine is shared: compare figures of one run.

    .venv/bin/python bench/admission.py [--quick] [--rounds 5] [--seconds 2] [--keys 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from random import random
from typing import Any

from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._cp_load import _Client, connect, request_bytes
from bench._cp_processes import CpuMeter, python_script, rss_bytes, started
from bench._errors import BenchError
from bench._streams import percentile
from control_plane.db.engine import create_engine, default_database_url
from control_plane.db.key_store import KeyStore
from control_plane.db.migrate import upgrade
from control_plane.db.models import utc_now
from control_plane.tenancy.admission import Tenancy
from control_plane.tenancy.directory import KeyDirectory
from control_plane.tenancy.secrets import new_secret, secret_digest, visible_prefix
from paddler import protocol
from tests.processes import AGENT_TOKEN, ControlPlane, wait_until

TOKENS = 16
POOL = "bench"
PATH = "/v1/chat/completions"
CONCURRENCIES = (1, 16)
# high enough never to refuse, low enough for a 32-bit column
NEVER_REFUSING = {
    "requests_per_minute": 1_000_000_000,
    "tokens_per_minute": 2_000_000_000,
    "daily_token_budget": 2_000_000_000,
}
USED_KEY = 5  # the key of "1 key"; "1,000 keys" uses every (keys // 1000)th key from 0


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


def make_keys(url: str, count: int) -> tuple[list[str], float]:
    """``count`` keys in the state database at ``url`` (migrated first), made a minute ago;
    their secrets and the seconds it took."""
    began = time.perf_counter()
    upgrade(url)
    secrets = [new_secret() for _ in range(count)]
    rows = [
        (f"bench-{number:05d}", visible_prefix(secret), secret_digest(secret), NEVER_REFUSING)
        for number, secret in enumerate(secrets)
    ]

    async def insert() -> None:
        engine = create_engine(url)
        try:
            store = KeyStore(engine, clock=lambda: utc_now() - timedelta(minutes=1))
            await store.bulk_create(rows)
        finally:
            await engine.dispose()

    asyncio.run(insert())
    return secrets, time.perf_counter() - began


def pinning(pin: bool) -> set[int] | None:
    """With ``pin`` and more than one CPU: the CPU the control planes will share (the last),
    after moving this process (and so the fake agents it starts) to the others. Sharing a
    core, the two planes meet the machine's other work alike."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None
    os.sched_setaffinity(0, cpus[:-1])
    return {cpus[-1]}


def started_plane(directory: Path, cpus: set[int] | None) -> tuple[ControlPlane, float]:
    """A control plane with its state in ``directory``/state (on ``cpus``, if given), and the
    seconds from its process's start to its first 200 on /health (it reads every key before)."""
    directory.mkdir(parents=True, exist_ok=True)
    plane = ControlPlane(directory)
    mine = os.sched_getaffinity(0)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)  # the plane's process inherits it
    try:
        began = time.perf_counter()
        plane.start()
        return plane, time.perf_counter() - began
    finally:
        os.sched_setaffinity(0, mine)


def start_times(
    directories: dict[str, Path], times: int, cpus: set[int] | None
) -> dict[str, list[float]]:
    """Each control plane started and stopped ``times`` times, in turns."""
    seconds: dict[str, list[float]] = {name: [] for name in directories}
    for turn in range(times):
        for name in list(directories)[:: 1 if turn % 2 else -1]:
            plane, startup = started_plane(directories[name], cpus)
            plane.stop()
            seconds[name].append(startup)
    return seconds


@contextlib.contextmanager
def plane_with_agent(
    directory: Path, cpus: set[int] | None
) -> Iterator[tuple[ControlPlane, float]]:
    """A control plane (state in ``directory``/state) and a fake agent of 64 slots; yields
    the plane and the seconds it took to answer /health (keys are read before it does)."""
    plane, startup = started_plane(directory, cpus)
    try:
        args = ["--control-plane", plane.management_url, "--token", AGENT_TOKEN, "--slots", "64"]
        log = directory / "fake-agent.log"
        with started(python_script("_cp_fake_agent.py", *args), log) as fake:

            def joined() -> bool:
                assert fake.poll() is None, log.read_text()
                return any(a["connected"] and a["state"] == "ready" for a in plane.agents())

            wait_until(joined, timeout=30, what="the fake agent")
            yield plane, startup
    finally:
        plane.stop()


def pid_of(plane: ControlPlane) -> int:
    assert plane.process is not None
    return plane.process.pid


def rss_of(open_plane: ControlPlane, keyed_plane: ControlPlane) -> dict[str, int]:
    return {"open": rss_bytes(pid_of(open_plane)), "keyed": rss_bytes(pid_of(keyed_plane))}


def answer_of(plane: ControlPlane, request: bytes) -> tuple[int, bytes]:
    async def ask() -> tuple[int, bytes]:
        connection = Connection(plane.inference_port)
        try:
            return await connection.ask(request)
        finally:
            connection.close()

    return asyncio.run(ask())


def usage(plane: ControlPlane, expected: int) -> dict[str, Any]:
    """GET /api/v1/usage once it counts ``expected`` requests (a sync flushes every 0.5 s),
    or after 10 s."""
    report: dict[str, Any] = {}

    def counted() -> bool:
        nonlocal report
        response = plane.management_get("/api/v1/usage")
        response.raise_for_status()
        report = response.json()
        return int(report["totals"]["requests"]) >= expected

    with contextlib.suppress(AssertionError):
        wait_until(counted, timeout=10, what="usage")
    return report


def run(args: argparse.Namespace, directory: Path) -> None:
    keyed_dir, open_dir = directory / "keyed", directory / "open"
    url = default_database_url(keyed_dir / "state")
    secrets, seeding = make_keys(url, args.keys)
    loading = asyncio.run(directory_load_seconds(url))
    print(
        f"{args.keys:,} keys made in the state database in {seeding:.1f} s (migrations "
        f"included); read into a KeyDirectory in {loading * 1000:.0f} ms"
    )
    step = max(1, args.keys // args.spread)
    indices = range(0, step * args.spread, step)
    spread = [secrets[index] for index in indices]
    admission = asyncio.run(in_process(url, secrets[USED_KEY], spread, args.calls))
    upgrade(default_database_url(open_dir / "state"))  # both planes start on a migrated database
    cpus = pinning(args.pin)
    if cpus is not None:
        others = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(0)))
        print(
            f"both control planes on CPU {min(cpus)}; this client and the fake agents on {others}"
        )
    starts = start_times({"open": open_dir, "keyed": keyed_dir}, args.starts - 1, cpus)
    with (
        plane_with_agent(open_dir, cpus) as (open_plane, open_startup),
        plane_with_agent(keyed_dir, cpus) as (keyed_plane, keyed_startup),
    ):
        rss_started = rss_of(open_plane, keyed_plane)
        starts["open"].append(open_startup)
        starts["keyed"].append(keyed_startup)
        check_keys_are_checked(keyed_plane, secrets[USED_KEY])
        port = keyed_plane.inference_port
        targets = [
            Target("open", open_plane, [chat_request(open_plane.inference_port, "")]),
            Target("1 key", keyed_plane, [chat_request(port, secrets[USED_KEY])]),
            Target(f"{len(spread):,} keys", keyed_plane, [chat_request(port, s) for s in spread]),
        ]
        measures: Measures = {(t.name, c): Measure() for t in targets for c in CONCURRENCIES}
        beside: dict[str, Measure] = {t.name: Measure() for t in targets[1:]}  # open's, at c=1
        for round_number in range(args.rounds):
            shift = round_number % len(targets)
            # c=1: the open API and one keyed target at a time take turns, request by request
            keyed_targets = targets[1:] if round_number % 2 == 0 else targets[:0:-1]
            for keyed in keyed_targets:
                turns = side_by_side(targets[0], keyed, args.seconds, args.warmup)
                baseline, measure = asyncio.run(turns)
                measures["open", 1].add(baseline)
                beside[keyed.name].add(baseline)
                measures[keyed.name, 1].add(measure)
            for target in targets[shift:] + targets[:shift]:
                loop = closed_loop(target, CONCURRENCIES[1], args.seconds, args.warmup)
                measures[target.name, CONCURRENCIES[1]].add(asyncio.run(loop))
        rss_after = rss_of(open_plane, keyed_plane)
        sent_open = sum(measures["open", c].answers for c in CONCURRENCIES)
        sent_keyed = 1 + sum(m.answers for (name, _), m in measures.items() if name != "open")
        usage_open, usage_keyed = usage(open_plane, sent_open), usage(keyed_plane, sent_keyed)
    spread_used = min(len(spread), targets[2].turn)
    used_keys = spread_used + (USED_KEY not in indices[:spread_used])
    print_table(targets, measures, args.rounds)
    print_added(targets, measures, beside)
    print(
        "admission alone, in process (authenticate + admit + settle): "
        + ", ".join(f"{name} {value * 1e6:.1f} us" for name, value in admission.items())
        + " per request"
    )
    print_memory_and_startup(args.keys, rss_started, rss_after, starts)
    print_checks(measures, usage_open, sent_open, usage_keyed, sent_keyed, used_keys)


async def in_process(url: str, one: str, spread: list[str], calls: int) -> dict[str, float]:
    """Seconds per request of admission alone, in this process (no HTTP, no SQL): the
    ``Authorization`` header looked up, ``Tenancy.admit``, the ticket settled. The best of 3."""
    request = protocol.GenerationRequest(
        kind="chat",
        messages=(protocol.ChatMessage(role="user", content="hi"),),
        sampling=protocol.SamplingParams(max_tokens=TOKENS),
    )
    engine = create_engine(url)
    try:
        keyed = KeyDirectory("", KeyStore(engine))
        await keyed.refresh()
    finally:
        await engine.dispose()
    cases = {
        "open": (KeyDirectory("", None), [""]),
        "1 key": (keyed, [f"Bearer {one}"]),
        f"{len(spread):,} keys": (keyed, [f"Bearer {secret}" for secret in spread]),
    }
    seconds: dict[str, float] = {}
    for name, (directory, headers) in cases.items():
        tenancy = Tenancy(directory, None, CollectorRegistry())
        gc.collect()  # not the garbage of the cases before
        best = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            for call in range(calls):
                caller = directory.authenticate(headers[call % len(headers)])
                assert caller is not None
                tenancy.admit(caller, POOL, request).settle(8, TOKENS)
            best = min(best, (time.perf_counter() - began) / calls)
        seconds[name] = best
    return seconds


async def directory_load_seconds(url: str) -> float:
    """How long a KeyDirectory takes to read every key, as a control plane does at start."""
    engine = create_engine(url)
    try:
        directory = KeyDirectory("", KeyStore(engine))
        began = time.perf_counter()
        await directory.refresh()
        return time.perf_counter() - began
    finally:
        await engine.dispose()


def check_keys_are_checked(plane: ControlPlane, secret: str) -> None:
    """The keyed plane refuses a request without a key and answers one with a key with
    OpenAI's rate-limit headers: its limits were looked at."""
    measure = Measure()
    unkeyed, _ = answer_of(plane, chat_request(plane.inference_port, ""))
    status, answer = answer_of(plane, chat_request(plane.inference_port, secret))
    if unkeyed != 401:
        raise BenchError(f"the plane with keys answered {unkeyed} to a request without a key")
    if not measure.answered(status, answer):
        raise BenchError(f"a request with a key failed: {measure.first_bad!r}")
    if b"x-ratelimit-limit-requests" not in answer.lower():
        raise BenchError("an answer to a key with limits had no x-ratelimit headers")


def print_table(
    targets: list[Target], measures: dict[tuple[str, int], Measure], rounds: int
) -> None:
    print(f"non-streamed chat completions of {TOKENS} tokens, {rounds} interleaved rounds:")
    print(f"{'target':<12}{'c':>4}{'RPS':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}")
    for target in targets:
        for c in CONCURRENCIES:
            m = measures[target.name, c]
            p50, p99 = percentile(m.latencies, 0.5) * 1000, percentile(m.latencies, 0.99) * 1000
            cpu = f"{m.cpu_per_request * 1e6:,.0f}" if m.seconds else "-"
            print(f"{target.name:<12}{c:>4}{m.rps:>9,.0f}{p50:>9.3f}{p99:>9.3f}{cpu:>12}")


def print_added(targets: list[Target], measures: Measures, beside: dict[str, Measure]) -> None:
    for target in targets[1:]:
        base, m = beside[target.name], measures[target.name, 1]
        base_p50, p50 = percentile(base.latencies, 0.5), percentile(m.latencies, 0.5)
        pairs = zip(m.round_p50s, base.round_p50s, strict=True)
        per_round = [ours - theirs for ours, theirs in pairs]
        rps16 = measures[target.name, 16].rps / max(measures["open", 16].rps, 1e-9)
        print(
            f"{target.name} vs open: c=1 p50 {(p50 - base_p50) * 1000:+.3f} ms "
            f"({p50 / base_p50:.3f}x: {p50 * 1000:.3f} vs {base_p50 * 1000:.3f} ms); per round "
            f"{min(per_round) * 1000:+.3f} to {max(per_round) * 1000:+.3f} ms (median "
            f"{statistics.median(per_round) * 1000:+.3f}); median of "
            f"{len(m.paired):,} paired differences {percentile(m.paired, 0.5) * 1000:+.3f} ms; "
            f"c=16 RPS {rps16:.3f}x"
        )


def print_memory_and_startup(
    keys: int, started: dict[str, int], after: dict[str, int], starts: dict[str, list[float]]
) -> None:
    mib = 1024 * 1024
    print(
        f"RSS: {keys:,} keys {started['keyed'] / mib:.1f} MiB vs none {started['open'] / mib:.1f}"
        f" MiB after start (+{(started['keyed'] - started['open']) / mib:.1f} MiB); after the run "
        f"{after['keyed'] / mib:.1f} vs {after['open'] / mib:.1f} MiB "
        f"(+{(after['keyed'] - after['open']) / mib:.1f} MiB)"
    )
    keyed, none = min(starts["keyed"]), min(starts["open"])
    print(
        f"start (process to its first 200 on /health, keys read), best of {len(starts['keyed'])}: "
        f"{keys:,} keys {keyed:.2f} s, none {none:.2f} s ({keyed - none:+.2f} s; all: "
        + " ".join(f"{value:.2f}" for value in starts["keyed"])
        + " vs "
        + " ".join(f"{value:.2f}" for value in starts["open"])
        + ")"
    )


def print_checks(
    measures: dict[tuple[str, int], Measure],
    usage_open: dict[str, Any],
    sent_open: int,
    usage_keyed: dict[str, Any],
    sent_keyed: int,
    used_keys: int,
) -> None:
    answers = sum(m.answers for m in measures.values())
    bad = sum(m.bad for m in measures.values())
    if bad:
        first = next(m.first_bad for m in measures.values() if m.first_bad)
        print(f"FAILED: {bad:,} of {answers:,} answers not 200 with {TOKENS} tokens: {first!r}")
    else:
        print(f"every answer 200 with {TOKENS} tokens: {answers:,} answers")
    keys = {row["key"] for row in usage_keyed.get("data", [])}
    counted = usage_keyed.get("totals", {}).get("requests", 0)
    print(
        f"usage (GET /api/v1/usage): {len(keys):,} keys with rows (expected {used_keys:,}), "
        f"{counted:,} requests counted of {sent_keyed:,} sent with keys; open API "
        f"{usage_open.get('totals', {}).get('requests', 0):,} of {sent_open:,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~30 s run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (5; quick: 3)")
    parser.add_argument("--seconds", type=float, help="per target, round and c (2; quick: 0.6)")
    parser.add_argument("--warmup", type=float, help="uncounted seconds before each (0.3)")
    parser.add_argument("--calls", type=int, help="of admission in process (5,000; quick 2,000)")
    parser.add_argument("--starts", type=int, help="of each control plane, timed (3; quick: 1)")
    parser.add_argument(
        "--no-pin", dest="pin", action="store_false", help="leave the processes where they run"
    )
    parser.add_argument("--keys", type=int, default=10_000, help="in the table (10,000)")
    parser.add_argument("--spread", type=int, default=1000, help="keys of '1,000 keys'")
    args = parser.parse_args()
    args.calls = args.calls or (2000 if args.quick else 5000)
    args.starts = max(1, args.starts or (1 if args.quick else 3))
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.seconds = args.seconds or (0.6 if args.quick else 2.0)
    args.warmup = args.warmup if args.warmup is not None else (0.2 if args.quick else 0.3)
    if args.keys <= USED_KEY or args.spread > args.keys:
        parser.error(f"--keys must be over {USED_KEY} and at least --spread")
    with tempfile.TemporaryDirectory() as name:
        run(args, Path(name))


if __name__ == "__main__":
    main()
