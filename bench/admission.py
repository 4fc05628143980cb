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
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._adm_in_process import in_process
from bench._adm_keys import make_keys, read_keys
from bench._adm_measure import (
    CONCURRENCIES,
    Measure,
    Measures,
    Target,
    answer_of,
    chat_request,
    closed_loop,
    side_by_side,
)
from bench._adm_planes import pinning, plane_with_agent, rss_of, start_times, usage
from bench._adm_report import (
    print_added,
    print_checks,
    print_in_process,
    print_memory_and_startup,
    print_table,
)
from bench._errors import BenchError
from control_plane.db.engine import default_database_url
from control_plane.db.migrate import upgrade
from tests.processes import ControlPlane

USED_KEY = 5  # the key of "1 key"; "1,000 keys" uses every (keys // 1000)th key from 0


def run(args: argparse.Namespace, directory: Path) -> None:
    keyed_dir, open_dir = directory / "keyed", directory / "open"
    url = default_database_url(keyed_dir / "state")
    secrets, seeding = make_keys(url, args.keys)
    _, loading = asyncio.run(read_keys(url))
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
    print_in_process(admission)
    print_memory_and_startup(args.keys, rss_started, rss_after, starts)
    print_checks(measures, usage_open, sent_open, usage_keyed, sent_keyed, used_keys)


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
