"""Engine benchmark: decode throughput and inter-token latency against llama.cpp's servers.

The same greedy load — N concurrent streams, each a different rambling prompt asking for
the same number of new tokens from the bundled SmolLM2-135M Q4_1 — is run at N = 1, 2, 4, 8
against
  engine            the agent's engine in-process, with as many slots as streams;
  full              a real control plane and agent over HTTP (agent --slots N);
  llama-cpp-server  llama-cpp-python's own OpenAI server (pip install -e '.[bench]');
  native            llama.cpp's llama-server -np N (binary named by $LLAMA_SERVER) and
                    llama-batched-bench at B = N ($LLAMA_BATCHED_BENCH);
and the time to first token of a request sharing a ~1,000-token prefix with the previous
one is measured with the engine's prompt cache on and off (prefix). Prints one table and
the ratios the engine is expected to meet.

    .venv/bin/python bench/engine.py [--streams 1,2,4,8] [--tokens 128] [--repeat 1]
                                     [--only engine,full,llama-cpp-server,native,prefix]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.engine.cpu_path import CPU_REPACK_CHOICES
from bench._errors import BenchError
from bench._interruption import Interruption
from bench._servers import CORES
from bench.engine_backends import (
    bench_batched_bench,
    bench_engine,
    bench_full,
    bench_llama_cpp_server,
    bench_llama_server,
    bench_prefix,
    policies,
)
from bench.engine_report import goals, print_prefix, print_table
from bench.engine_workload import (
    CONTEXT_PER_SLOT,
    PROMPTS,
    Backend,
    Config,
    PrefixReport,
    count_tokens,
)
from paddler.bundled import bundled_model_path

BACKENDS = ("engine", "full", "llama-cpp-server", "native", "prefix")


# running it all


def streams_list(text: str) -> list[int]:
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("streams must be positive numbers")
    return values


def backends_list(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in chosen if name not in BACKENDS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(BACKENDS)}")
    return chosen


@dataclass
class Plan:
    """What to run: a backend's key, its label and how to run it into a Backend."""

    key: str
    label: str
    run: Callable[[Backend], None]


def plans(config: Config, selected: Sequence[str]) -> Iterator[Plan]:
    def engine(backend: Backend) -> None:
        asyncio.run(bench_engine(config, backend))

    if "engine" in selected:
        yield Plan("engine", "engine in-process", engine)
    if "full" in selected:
        yield Plan("full", "full path: control plane + agent", lambda b: bench_full(config, b))
    if "llama-cpp-server" in selected:
        yield Plan(
            "llama-cpp-server",
            "llama_cpp.server (serial)",
            lambda b: bench_llama_cpp_server(config, b),
        )
    if "native" in selected:
        yield Plan(
            "llama-server", "native llama-server -np N", lambda b: bench_llama_server(config, b)
        )
        prompt_tokens = round(statistics.mean(count_tokens(config.model, p) for p in PROMPTS))
        yield Plan(
            "batched-bench",
            f"native llama-batched-bench (npp {prompt_tokens})",
            lambda b: bench_batched_bench(config, b, prompt_tokens),
        )


def failure(error: Exception, *, full: bool = False) -> str:
    """A BenchError's message (first line, or all with ``full``); anything else with its type."""
    if isinstance(error, BenchError):
        text = str(error)
    elif full:
        text = "".join(traceback.format_exception(error))
    else:
        text = f"{type(error).__name__}: {error}"
    return text if full else (text.splitlines() or [""])[0]


def run(config: Config, selected: Sequence[str], interruption: Interruption) -> int:
    started = time.monotonic()
    print(
        f"SmolLM2-135M Q4_1, {CORES} cores; {config.tokens} new tokens per stream, greedy; "
        f"streams {','.join(map(str, config.streams))}; median of {config.repeat} run(s)."
    )
    print(
        f"Slots = streams everywhere (engine slots, agent --slots, llama-server -np), "
        f"{CONTEXT_PER_SLOT} tokens of context per slot; logs in {config.directory}"
    )
    print("\n".join(policies(config)) + "\n")
    by_key: dict[str, Backend] = {}
    for plan in plans(config, selected):
        backend = by_key[plan.key] = Backend(plan.label)
        print(f"running {plan.label} …", flush=True)
        try:
            plan.run(backend)
        except Exception as error:  # one backend's failure should not hide the others
            interruption.check()
            backend.failed = True
            backend.note = "FAILED: " + failure(error)
            print(f"  {plan.label} failed: {failure(error, full=True)}", flush=True)
        if backend.note and not backend.failed:
            print(f"  {backend.note}", flush=True)
    prefix: PrefixReport | None = None
    prefix_missing = "prefix not run"
    if "prefix" in selected:
        print("running prefix reuse …", flush=True)
        try:
            prefix = bench_prefix(config)
        except Exception as error:
            interruption.check()
            prefix_missing = "FAILED: " + failure(error)
            print(f"  prefix reuse failed: {failure(error, full=True)}", flush=True)

    print("\nAggregate decode tokens/s, inter-token latency (ITL), mean time to first token:")
    print_table(list(by_key.values()), config.tokens)
    if prefix is not None:
        print()
        print_prefix(prefix)
    print("\nGoals (decode tokens/s at 4 concurrent streams):")
    listed = goals(by_key, prefix, prefix_missing)
    for goal in listed:
        print(goal.line())
    print(f"\n({time.monotonic() - started:.0f} s)")
    failed = any(backend.failed for backend in by_key.values())
    return 1 if failed or prefix_missing.startswith("FAILED") else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--streams", type=streams_list, default=[1, 2, 4, 8], help="1,2,4,8")
    parser.add_argument("--tokens", type=int, default=128, help="new tokens per stream (128)")
    parser.add_argument(
        "--only", type=backends_list, default=list(BACKENDS), help=",".join(BACKENDS)
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement (median)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    parser.add_argument(
        "--cpu-repack",
        choices=CPU_REPACK_CHOICES,
        default="auto",
        help="the agent's CPU buffer policy, applied to every backend alike (auto)",
    )
    args = parser.parse_args()
    if args.tokens < 2 or args.repeat < 1:
        parser.error("--tokens must be at least 2 and --repeat at least 1")
    directory = Path(tempfile.mkdtemp(prefix="paddler-bench-"))
    config = Config(
        bundled_model_path(), args.streams, args.tokens, args.repeat, directory, args.cpu_repack
    )
    code = 1
    try:
        with Interruption().installed() as interruption:
            code = run(config, args.only, interruption)
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped", file=sys.stderr)
        code = 130
    except SystemExit as stopped:
        print("\nstopped by a signal: servers stopped", file=sys.stderr)
        code = int(stopped.code or 1)
    finally:
        if args.keep_logs or code != 0:
            print(f"logs kept in {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
