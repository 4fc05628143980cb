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
import contextlib
import functools
import importlib.util
import io
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp

from bench._common import (
    CORES,
    BenchEngine,
    BenchError,
    CommandServer,
    Interruption,
    Load,
    StreamTrace,
    control_plane,
    engine_accepts,
    engine_class,
    engine_load,
    engine_stream,
    http_load,
    log_tail,
    make_engine,
    paddler_agent,
    percentile,
    running,
)
from paddler.models import bundled_model_path
from paddler.protocol import GenerationRequest, SamplingParams
from tests.processes import free_port

CONTEXT_PER_SLOT = 2048
BACKENDS = ("engine", "full", "llama-cpp-server", "native", "prefix")
COMPLETIONS = "/v1/completions"

# Plain-text openings (no chat template, no special tokens, so every server tokenizes them
# alike) that SmolLM2 continues greedily for hundreds of tokens without an end of text.
PROMPTS = (
    "The history of the city of Rome, told in great detail. Chapter one:",
    "Once upon a time, in a small village by the sea, there lived",
    "A complete guide to growing tomatoes at home. First, the soil:",
    "The lighthouse keeper's diary, day one. The storm began at dawn and",
    "An introduction to the theory of computation. Section 1.1:",
    "The travels of a merchant along the Silk Road, day by day. Day one:",
    "How the river changed the valley over ten thousand years. In the beginning,",
    "The rules of chess, explained for a beginner, starting with the pawn:",
)
QUESTIONS = (
    "\n\nQuestion: What is the text above mostly about?\nAnswer: The text",
    "\n\nQuestion: Which place is named most often in the text above?\nAnswer: The place",
)
WORDS = (
    *("river", "valley", "harbour", "lantern", "merchant", "winter", "garden", "engine"),
    *("orchard", "quarry", "bridge", "tower", "market", "meadow", "library", "mill", "canal"),
    *("forest", "island", "ledger", "archive", "signal", "copper", "granite", "season"),
    *("harvest", "compass", "voyage", "workshop"),
)


def completion_request(prompt: str, tokens: int) -> GenerationRequest:
    return GenerationRequest(
        kind="completion",
        prompt=prompt,
        sampling=SamplingParams(max_tokens=tokens, temperature=0.0),
    )


def completion_body(model: Path, prompt: str, tokens: int) -> dict[str, Any]:
    return {
        "model": model.stem,
        "prompt": prompt,
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def stream_prompts(streams: int) -> list[str]:
    return [PROMPTS[index % len(PROMPTS)] for index in range(streams)]


# results


@dataclass
class Row:
    """One backend at one number of concurrent streams, over ``--repeat`` runs."""

    streams: int
    loads: list[Load] = field(default_factory=list)
    native_rates: list[float] = field(default_factory=list)  # llama-batched-bench's S_TG
    native_tokens: int = 0

    @property
    def rate(self) -> float:
        """Median aggregate decode tokens/s over the repeats."""
        if self.native_rates:
            return statistics.median(self.native_rates)
        return statistics.median(load.decode_tokens_per_second for load in self.loads)

    @property
    def tokens(self) -> int:
        return self.native_tokens or self.loads[0].tokens

    def gaps(self) -> list[float]:
        return [gap for load in self.loads for gap in load.gaps()]

    @property
    def first_token(self) -> float:
        return statistics.median(load.mean_first_token for load in self.loads)


@dataclass
class Backend:
    label: str
    rows: dict[int, Row] = field(default_factory=dict)
    note: str = ""  # why it was skipped or failed
    failed: bool = False

    def rate(self, streams: int) -> float | None:
        row = self.rows.get(streams)
        return None if row is None else row.rate


@dataclass
class PrefixReport:
    prefix_tokens: int
    first: dict[str, float]  # cache label -> median TTFT of the request that opens a prefix
    second: dict[str, float]  # cache label -> median TTFT of the request that shares it
    cached: dict[str, int]
    note: str = ""


@dataclass
class Config:
    model: Path
    streams: list[int]
    tokens: int
    repeat: int
    directory: Path


async def repeated(
    config: Config,
    row: Row,
    run: Callable[[], Awaitable[Load]],
    warm_up: Callable[[], Awaitable[Any]],
) -> None:
    await warm_up()
    for _ in range(config.repeat):
        row.loads.append(await run())


# (a) the engine in-process


async def bench_engine(config: Config, backend: Backend) -> None:
    for streams in config.streams:
        engine = make_engine(config.model, streams, context_size=CONTEXT_PER_SLOT)
        try:
            await engine.load()
            backend.rows[streams] = await engine_row(config, engine, streams)
        finally:
            engine.close()


async def engine_row(config: Config, engine: BenchEngine, streams: int) -> Row:
    requests = [completion_request(p, config.tokens) for p in stream_prompts(streams)]

    async def run() -> Load:
        return await engine_load(engine, requests)

    async def warm_up() -> StreamTrace:
        return await engine_stream(engine, completion_request("Hello", 4))

    row = Row(streams)
    await repeated(config, row, run, warm_up)
    return row


# (b) control plane + agent, and (c), (d) other OpenAI-compatible servers, over HTTP


def http_row(config: Config, base_url: str, streams: int, what: str) -> Row:
    bodies = [completion_body(config.model, p, config.tokens) for p in stream_prompts(streams)]
    warm = [completion_body(config.model, "Hello", 4)]
    row = Row(streams)

    async def run() -> Load:
        return await http_load(base_url, COMPLETIONS, bodies, what=what)

    async def warm_up() -> Load:
        return await http_load(base_url, COMPLETIONS, warm, what=what)

    asyncio.run(repeated(config, row, run, warm_up))
    return row


def bench_full(config: Config, backend: Backend) -> None:
    with control_plane(config.directory) as plane:
        for streams in config.streams:
            name = f"bench-{streams}"
            extra = ["--context-size", str(CONTEXT_PER_SLOT)]
            with paddler_agent(
                plane, config.directory, name, config.model, slots=streams, extra=extra
            ):
                backend.rows[streams] = http_row(
                    config, plane.inference_url, streams, "the control plane"
                )


LLAMA_CPP_SERVER_NEEDS = ("fastapi", "uvicorn", "sse_starlette", "starlette_context")


def bench_llama_cpp_server(config: Config, backend: Backend) -> None:
    missing = [name for name in LLAMA_CPP_SERVER_NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        backend.note = (
            f"skipped: llama_cpp.server needs {', '.join(missing)}: "
            ".venv/bin/pip install -e '.[bench]'"
        )
        return
    port = free_port()
    # --interrupt_requests False: by default a new request cuts off the one being streamed;
    # with it off, concurrent requests queue (it serves one at a time) and all complete.
    args = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        *("--model", str(config.model), "--model_alias", config.model.stem),
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--n_ctx", str(CONTEXT_PER_SLOT), "--n_batch", "512"),
        *("--n_threads", str(CORES), "--n_threads_batch", str(CORES)),
        *("--interrupt_requests", "False", "--verbose", "False"),
    ]
    base_url = f"http://127.0.0.1:{port}"
    log = config.directory / "llama-cpp-server.log"
    server = CommandServer("llama_cpp.server", args, log, base_url + "/v1/models")
    with running(server):
        for streams in config.streams:
            backend.rows[streams] = http_row(config, base_url, streams, "llama_cpp.server")


def native_binary(variable: str) -> Path | str:
    """The binary ``$variable`` names, or why there is none."""
    value = os.environ.get(variable)
    if not value:
        return f"{variable} is not set"
    path = Path(value)
    if not (path.is_file() and os.access(path, os.X_OK)):
        return f"{variable}={value} is not an executable file"
    return path


def bench_llama_server(config: Config, backend: Backend) -> None:
    binary = native_binary("LLAMA_SERVER")
    if isinstance(binary, str):
        backend.note = f"skipped: {binary} (set it to a llama.cpp llama-server binary)"
        return
    for streams in config.streams:
        port = free_port()
        args = [
            str(binary),
            *("-m", str(config.model), "--host", "127.0.0.1", "--port", str(port)),
            *("-np", str(streams), "-c", str(streams * CONTEXT_PER_SLOT)),
            *("--threads", str(CORES), "--threads-batch", str(CORES)),
        ]
        base_url = f"http://127.0.0.1:{port}"
        log = config.directory / f"llama-server-{streams}.log"
        with running(CommandServer("llama-server", args, log, base_url + "/health")):
            backend.rows[streams] = http_row(config, base_url, streams, "llama-server")


BATCHED_BENCH_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|(.*)\|\s*$")


def parse_batched_bench(output: str) -> dict[int, float]:
    """S_TG t/s per B from llama-batched-bench's table (PP | TG | B | N_KV | … | S_TG | …)."""
    rates: dict[int, float] = {}
    for line in output.splitlines():
        match = BATCHED_BENCH_ROW.match(line.strip())
        if match:
            cells = [cell.strip() for cell in match.group(4).split("|")]
            rates[int(match.group(3))] = float(cells[4])  # N_KV, T_PP, S_PP, T_TG, S_TG
    return rates


def bench_batched_bench(config: Config, backend: Backend, prompt_tokens: int) -> None:
    binary = native_binary("LLAMA_BATCHED_BENCH")
    if isinstance(binary, str):
        backend.note = f"skipped: {binary} (set it to a llama.cpp llama-batched-bench binary)"
        return
    batches = ",".join(str(streams) for streams in config.streams)
    args = [
        str(binary),
        *("-m", str(config.model), "-c", str(max(config.streams) * CONTEXT_PER_SLOT)),
        *("-b", "2048", "-ub", "512", "-t", str(CORES), "-tb", str(CORES)),
        *("-npp", str(prompt_tokens), "-ntg", str(config.tokens), "-npl", batches),
    ]
    log = config.directory / "llama-batched-bench.log"
    for _ in range(config.repeat):
        with log.open("w") as output:
            try:
                done = subprocess.run(
                    args, stdout=output, stderr=subprocess.STDOUT, timeout=600, check=False
                )
            except subprocess.TimeoutExpired:
                raise BenchError(
                    "llama-batched-bench took over 600 s\n" + log_tail("llama-batched-bench", log)
                ) from None
        rates = parse_batched_bench(log.read_text(errors="replace"))
        missing = [streams for streams in config.streams if streams not in rates]
        if done.returncode != 0 or missing:
            raise BenchError(
                f"llama-batched-bench exited {done.returncode} without rows for B={missing}\n"
                + log_tail("llama-batched-bench", log)
            )
        for streams in config.streams:
            row = backend.rows.setdefault(streams, Row(streams))
            row.native_rates.append(rates[streams])
            row.native_tokens = streams * config.tokens


# the prompt cache: time to first token of a request that shares a long prefix


@functools.cache
def tokenizer(model: Path) -> Any:
    """The model's vocabulary alone, loaded once (its load chatter kept off the screen)."""
    with contextlib.redirect_stderr(io.StringIO()):
        return llama_cpp.Llama(model_path=str(model), vocab_only=True, verbose=False)


def count_tokens(model: Path, text: str) -> int:
    return len(tokenizer(model).tokenize(text.encode(), add_bos=True, special=True))


def long_prefix(model: Path, seed: int, tokens: int = 1000) -> str:
    """A document of made-up sentences, at least ``tokens`` tokens long."""
    rng = random.Random(seed)
    text = f"Document {seed}."
    while count_tokens(model, text) < tokens:
        words = rng.sample(WORDS, 8)
        text += f" The {words[0]} near the {words[1]} kept its {' '.join(words[2:])}."
    return text


async def prefix_run(model: Path, prefixes: Sequence[str], cache: bool) -> list[StreamTrace]:
    """Per prefix: a request opening it, then one sharing it; returns the traces in pairs."""
    engine: BenchEngine = make_engine(model, 4, context_size=CONTEXT_PER_SLOT, prompt_cache=cache)
    traces: list[StreamTrace] = []
    try:
        await engine.load()
        await engine_stream(engine, completion_request("Hello", 4))
        for prefix in prefixes:
            for question in QUESTIONS:
                traces.append(await engine_stream(engine, completion_request(prefix + question, 8)))
    finally:
        engine.close()
    return traces


def bench_prefix(config: Config) -> PrefixReport:
    pairs = max(3, config.repeat)
    prefixes = [long_prefix(config.model, seed) for seed in range(pairs)]
    prefix_tokens = statistics.median(count_tokens(config.model, p) for p in prefixes)
    modes = {"on": True, "off": False} if engine_accepts("prompt_cache") else {"none": False}
    report = PrefixReport(int(prefix_tokens), {}, {}, {})
    if "none" in modes:
        report.note = f"{engine_class().__name__} has no prompt_cache option: no reuse to compare"
    for label, cache in modes.items():
        traces = asyncio.run(prefix_run(config.model, prefixes, cache))
        report.first[label] = statistics.median(t.first_token for t in traces[0::2])
        report.second[label] = statistics.median(t.first_token for t in traces[1::2])
        report.cached[label] = int(statistics.median(t.cached_tokens for t in traces[1::2]))
    return report


# output


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
    if prefix is not None and "on" in prefix.second:
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
    if report.note:
        print(f"  {report.note}")


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
        yield Plan("engine", f"engine in-process ({engine_class().__name__})", engine)
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
        f"{CONTEXT_PER_SLOT} tokens of context per slot; logs in {config.directory}\n"
    )
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
    if prefix is not None:
        prefix_missing = prefix.note
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
    args = parser.parse_args()
    if args.tokens < 2 or args.repeat < 1:
        parser.error("--tokens must be at least 2 and --repeat at least 1")
    directory = Path(tempfile.mkdtemp(prefix="paddler-bench-"))
    config = Config(bundled_model_path(), args.streams, args.tokens, args.repeat, directory)
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
