"""The engine benchmark's output: the table, the goals it is expected to meet, the prefix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench._streams import percentile
from bench.engine_workload import Backend, PrefixReport


@dataclass
class Goal:
    what: str
    target: float
    numerator: float | None
    denominator: float | None
    missing: str = ""

    def line(self) -> str:
        if self.numerator is None or self.denominator is None or not self.denominator:
            return f"  {self.what:<58} {'n/a':>7}   ≥{self.target:.2f}x  n/a ({self.missing})"
        ratio = self.numerator / self.denominator
        verdict = "PASS" if ratio >= self.target else "FAIL"
        return f"  {self.what:<58} {ratio:>6.2f}x   ≥{self.target:.2f}x  {verdict}"

    @property
    def failed(self) -> bool:
        if self.numerator is None or self.denominator is None or not self.denominator:
            return False
        return self.numerator / self.denominator < self.target


def milliseconds(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:.1f}"  # NaN: no gaps


def print_table(backends: Sequence[Backend], tokens: int) -> None:
    header = (
        f"  {'backend':<36} {'streams':>7} {'tokens':>7} {'decode tok/s':>12} "
        f"{'vs 1':>6} {'ITL p50 ms':>10} {'ITL p95 ms':>10} {'TTFT ms':>8}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    short = False
    for backend in backends:
        if not backend.rows:
            print(f"  {backend.label:<36} {backend.note}")
            continue
        one = backend.rate(1)
        for streams, row in sorted(backend.rows.items()):
            versus = f"{row.rate / one:.2f}x" if one else "-"
            mark = "*" if row.tokens < streams * tokens else " "
            short = short or mark == "*"
            gaps = row.gaps()
            first = milliseconds(row.first_token) if row.loads else "-"
            print(
                f"  {backend.label:<36} {streams:>7} {row.tokens:>6}{mark} {row.rate:>12.1f} "
                f"{versus:>6} {milliseconds(percentile(gaps, 0.5)):>10} "
                f"{milliseconds(percentile(gaps, 0.95)):>10} {first:>8}"
            )
        if backend.note:
            print(f"  {'':<36} {backend.note}")
    if short:
        print(f"  * fewer than {tokens} tokens a stream: some ended early (end of text)")


PREFIX_GOAL = "prefix reuse: time to first token, cache off / on"


def goals(
    by_key: dict[str, Backend], prefix: PrefixReport | None, prefix_missing: str
) -> list[Goal]:
    def rate(key: str) -> float | None:
        backend = by_key.get(key)
        return None if backend is None else backend.rate(4)

    def why(*keys: str) -> str:
        for key in keys:
            backend = by_key.get(key)
            if backend is None:
                return f"{key} not run"
            if backend.rate(4) is None:
                return backend.note or "no 4-stream figure (add 4 to --streams)"
        return ""

    engine_one = by_key["engine"].rate(1) if "engine" in by_key else None
    listed = [
        Goal(
            "engine at 4 streams vs its own 1 stream",
            1.35,
            rate("engine"),
            engine_one,
            why("engine") or ("" if engine_one else "no 1-stream figure"),
        ),
        Goal(
            "engine at 4 streams vs llama-batched-bench B=4 (S_TG)",
            0.95,
            rate("engine"),
            rate("batched-bench"),
            why("engine", "batched-bench"),
        ),
        Goal(
            "full path vs llama_cpp.server, 4 streams",
            1.3,
            rate("full"),
            rate("llama-cpp-server"),
            why("full", "llama-cpp-server"),
        ),
        Goal(
            "full path vs native llama-server -np 4, 4 streams",
            0.9,
            rate("full"),
            rate("llama-server"),
            why("full", "llama-server"),
        ),
    ]
    if prefix is not None:
        listed.append(
            Goal(
                PREFIX_GOAL,
                3.0,
                prefix.second["off"],
                prefix.second["on"],
            )
        )
    else:
        listed.append(Goal(PREFIX_GOAL, 3.0, None, None, prefix_missing))
    return listed


def print_prefix(report: PrefixReport) -> None:
    print(
        f"Time to first token with a {report.prefix_tokens}-token prefix shared with the "
        "previous request (engine, 4 slots, median over prefixes):"
    )
    for label in report.first:
        print(
            f"  prompt cache {label:<4}  opening request {report.first[label] * 1000:7.1f} ms"
            f"   sharing request {report.second[label] * 1000:7.1f} ms"
            f"   its cached_tokens {report.cached[label]}"
        )
