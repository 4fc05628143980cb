"""The figures bench/admission.py prints: latency and RPS per target, what a key check adds
over the open API, admission alone, memory and start time, and the checks of every answer.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench._adm_measure import CONCURRENCIES, TOKENS, Measure, Measures, Target
from bench._streams import percentile


def print_table(targets: list[Target], measures: Measures, rounds: int) -> None:
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


def print_in_process(admission: dict[str, float]) -> None:
    print(
        "admission alone, in process (authenticate + admit + settle): "
        + ", ".join(f"{name} {value * 1e6:.1f} us" for name, value in admission.items())
        + " per request"
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
    measures: Measures,
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
