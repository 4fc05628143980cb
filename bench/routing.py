"""Prefix-aware routing against least-busy routing, with real SmolLM2 agents, in one run.

One control plane and two pools side by side, each of ``--agents`` real agents of ``--slots``
slots: the pool ``routing-least-busy`` routes by load alone, the pool ``routing-prefix`` by
cached prefix (each set by its desired state's ``routing.mode``). Both play the same workload
at the same time, so the machine's other load weighs on both alike: ``--conversations``
conversations, ``--at-once`` at a time, each with its own history of about ``--history``
tokens and ``--turns`` turns, its user thinking up to ``--think`` seconds before each
(``bench/_routing_workload.py``). Printed per pool: the time to first token of follow-up turns
(p50, p95), aggregate generated tokens/s, and the cache hit ratio of follow-up turns (cached
prompt tokens / prompt tokens) beside the one-agent ideal (every follow-up finding the previous
turn's prompt and answer cached); then the share of follow-ups that found at least half of
that cached, the p50 time to first token of those and of the others, and the pool's wall time.

    .venv/bin/python bench/routing.py [--quick] [--agents 4 --slots 2 --conversations 16]

By default the issue's fleet, 4 agents x 2 slots per pool, with 1 engine thread each (8 agents
on 2 cores: no more threads than that, so no spinning threads fight), and 16 conversations of
~1,000 tokens, 6 at a time, 3 turns each: 7.5 to 9.5 minutes on 2 shared cores
(``--quick``: 6 conversations, about 2.5 minutes; the issue's 32 is ``--conversations 32``,
about 16 minutes). Two things keep least-busy from landing on the holder by accident, which a
saturated closed loop makes it do: ``--at-once`` defaults to 3/4 of a pool's slots (each slot
keeps one prompt's KV, so more conversations at a time than slots could not all stay cached
under any routing, and with every slot taken the only free one is the one the conversation
just left), and users think between turns (up to 40 s: reading, typing), long enough for the
least-busy pool's misses not to saturate 2 cores, so that a follow-up finds several agents
free and least-busy has a real choice, as in a fleet with headroom. With ``--think 4`` the
least-busy pool saturates and half its follow-ups land on the holder anyway.
The issue's goals, checked at the end: follow-up p50 time to first token at least 3x lower
than least-busy; hit ratio at least 80% of the ideal; tokens/s no more than 5% below
least-busy.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._routing_workload import Phase, both
from bench._servers import CORES, control_plane, paddler_agent
from paddler.bundled import bundled_model_path
from tests.processes import ADMIN_HEADERS

DECISION = re.compile(
    r'paddler_routing_decisions_total\{pool="([^"]+)",reason="([^"]+)"\} ([0-9.e+]+)'
)
# the defaults, and --quick's; a flag given wins over both
FULL = {"agents": 4, "slots": 2, "conversations": 16, "turns": 3, "think": 40.0}
QUICK = {"agents": 4, "slots": 2, "conversations": 6, "turns": 3, "think": 20.0}


def set_mode(
    management_url: str, pool: str, model: Path, slots: int, context: int, mode: str
) -> None:
    spec = {
        "model_source": str(model),
        "slots": slots,
        "context_size": context,
        "routing": {"mode": mode},
    }
    url = f"{management_url}/api/v1/pools/{pool}/desired-state"
    answer = httpx.put(url, headers=ADMIN_HEADERS, json=spec, timeout=30)
    answer.raise_for_status()


def routing_decisions(management_url: str) -> dict[str, dict[str, int]]:
    """``paddler_routing_decisions_total`` by pool and reason, from the control plane."""
    text = httpx.get(management_url + "/metrics", headers=ADMIN_HEADERS, timeout=30).text
    found: dict[str, dict[str, int]] = {}
    for pool, reason, count in DECISION.findall(text):
        found.setdefault(pool, {})[reason] = int(float(count))
    return found


def report(phases: list[Phase], args: argparse.Namespace, threads: int) -> None:
    follow_ups = len(phases[0].follow_ups())
    print(
        f"\n2 pools side by side, each {args.agents} agents x {args.slots} slots ({threads} "
        f"thread(s) each, {CORES} cores); per pool {args.conversations} conversations, "
        f"{args.at_once} at a time, {args.turns} turns each ({follow_ups} follow-ups), "
        f"0-{args.think:g}s of thinking before each turn, history ~{args.history} tokens, "
        f"{args.max_tokens} tokens per answer"
    )
    print(f"{'routing':<12}{'TTFT p50':>10}{'TTFT p95':>10}{'tok/s':>8}{'hit':>7}{'ideal':>7}")
    for phase in phases:
        print(
            f"{phase.mode:<12}{phase.ttft(0.5):>9.3f}s{phase.ttft(0.95):>9.3f}s"
            f"{phase.tokens_per_second:>8.2f}{phase.hit_ratio:>7.0%}{phase.ideal_ratio:>7.0%}"
        )
    print(f"{'routing':<12}{'found':>8}{'p50 found':>11}{'p50 missed':>12}{'wall':>8}")
    for phase in phases:
        print(
            f"{phase.mode:<12}{phase.found_share:>8.0%}{_seconds(phase.ttft(0.5, True), 11)}"
            f"{_seconds(phase.ttft(0.5, False), 12)}{phase.seconds:>7.0f}s"
        )
    plain, prefix = phases
    speedup = plain.ttft(0.5) / prefix.ttft(0.5)
    of_ideal = prefix.hit_ratio / prefix.ideal_ratio
    throughput = prefix.tokens_per_second / plain.tokens_per_second - 1
    print(f"follow-up p50 TTFT {speedup:.1f}x lower (goal >= 3x): {_met(speedup >= 3)}")
    print(f"hit ratio {of_ideal:.0%} of the ideal (goal >= 80%): {_met(of_ideal >= 0.8)}")
    within = _met(throughput >= -0.05)
    print(f"tokens/s {throughput:+.1%} vs least-busy (goal: no more than 5% lower): {within}")


def _seconds(value: float, width: int) -> str:
    """``value`` seconds right-aligned in ``width`` characters; "-" for none (NaN)."""
    return f"{'-':>{width}}" if math.isnan(value) else f"{value:>{width - 1}.3f}s"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"a short run: {QUICK}")
    parser.add_argument("--model", type=Path, default=None, help="default: bundled SmolLM2")
    parser.add_argument("--agents", type=int, help=f"per pool (default {FULL['agents']})")
    parser.add_argument("--slots", type=int, help=f"per agent (default {FULL['slots']})")
    parser.add_argument(
        "--conversations", type=int, help=f"in all, per pool (default {FULL['conversations']})"
    )
    parser.add_argument("--at-once", type=int, help="conversations at a time (default: 3/4 slots)")
    parser.add_argument("--turns", type=int, help=f"per conversation (default {FULL['turns']})")
    parser.add_argument(
        "--think", type=float, help=f"most seconds before a turn (default {FULL['think']:g})"
    )
    parser.add_argument("--history", type=int, default=1000, help="tokens of each history")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.at_once is None:
        args.at_once = max(1, args.agents * args.slots * 3 // 4)
    return args


def main() -> None:
    args = parse()
    model = args.model or bundled_model_path()
    threads = max(1, CORES // (2 * args.agents))
    context = 2 * args.history + args.turns * (args.max_tokens + 40) + 256
    with tempfile.TemporaryDirectory() as directory, ExitStack() as stack:
        plane = stack.enter_context(control_plane(Path(directory)))
        flags = ["--threads", str(threads), "--context-size", str(context)]
        for pool, mode in (("routing-least-busy", "least_busy"), ("routing-prefix", "prefix")):
            for index in range(args.agents):
                name = f"{mode}-{index}"
                agent_flags = [*flags, "--pool", pool]
                stack.enter_context(
                    paddler_agent(
                        plane, Path(directory), name, model, slots=args.slots, extra=agent_flags
                    )
                )
            set_mode(plane.management_url, pool, model, args.slots, context, mode)
        time.sleep(1.0)  # the agents adopt the desired states (they change nothing there)
        phases = asyncio.run(both(plane.inference_url, args))
        decisions = routing_decisions(plane.management_url)
    report(phases, args, threads)
    for pool, counts in sorted(decisions.items()):
        print(
            f"{pool} routing decisions: {', '.join(f'{r} {n}' for r, n in sorted(counts.items()))}"
        )


if __name__ == "__main__":
    main()
