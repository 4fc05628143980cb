"""The engine benchmark's backends: what each measures and how it is run.

(a) the engine in-process, (b) a control plane and agent over HTTP, (c) llama-cpp-python's
OpenAI server, (d) llama.cpp's llama-server and llama-batched-bench; and the time to first
token of a request sharing a long prefix, with the engine's prompt cache on and off.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from agent.engine.engine import Engine
from bench._errors import BenchError
from bench._servers import CORES, CommandServer, control_plane, log_tail, paddler_agent, running
from bench._streams import Load, StreamTrace, engine_load, engine_stream, http_load
from bench.engine_workload import (
    COMPLETIONS,
    CONTEXT_PER_SLOT,
    QUESTIONS,
    Backend,
    Config,
    PrefixReport,
    Row,
    completion_body,
    completion_request,
    count_tokens,
    long_prefix,
    repeated,
    stream_prompts,
)
from paddler.protocol import CpuRepack
from tests.processes import free_port

# (a) the engine in-process


async def bench_engine(config: Config, backend: Backend) -> None:
    for streams in config.streams:
        engine = Engine(
            config.model, streams, context_size=CONTEXT_PER_SLOT, cpu_repack=config.cpu_repack
        )
        try:
            await engine.load()
            backend.rows[streams] = await engine_row(config, engine, streams)
        finally:
            engine.close()


async def engine_row(config: Config, engine: Engine, streams: int) -> Row:
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
            extra = ["--context-size", str(CONTEXT_PER_SLOT), "--cpu-repack", config.cpu_repack]
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
        str(Path(__file__).with_name("llama_cpp_server.py")),
        *("--cpu-repack", config.cpu_repack),
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


def native_policy(config: Config) -> list[str]:
    """llama.cpp's own tools repack by default; ``--no-repack`` turns every extra buffer
    type off, as ``use_extra_bufts`` does for the agent."""
    return [] if config.cpu_path.extra_buffers else ["--no-repack"]


def policies(config: Config) -> list[str]:
    """What each side of the comparison runs with, to print beside the results."""
    path = config.cpu_path
    native = "default (repack on)" if path.extra_buffers else "--no-repack"
    return [
        f"CPU features: {' '.join(path.features) or 'baseline'}; buffer policy: {path.summary}",
        f"  engine, agent: --cpu-repack {config.cpu_repack}; "
        f"llama_cpp.server: use_extra_bufts={path.extra_buffers}; "
        f"llama-server, llama-batched-bench: {native}",
    ]


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
            *native_policy(config),
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
        *native_policy(config),
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


async def prefix_run(
    model: Path, prefixes: Sequence[str], cache: bool, cpu_repack: CpuRepack
) -> list[StreamTrace]:
    """Per prefix: a request opening it, then one sharing it; returns the traces in pairs."""
    engine = Engine(
        model, 4, context_size=CONTEXT_PER_SLOT, prompt_cache=cache, cpu_repack=cpu_repack
    )
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
    report = PrefixReport(int(prefix_tokens), {}, {}, {})
    for label, cache in {"on": True, "off": False}.items():
        traces = asyncio.run(prefix_run(config.model, prefixes, cache, config.cpu_repack))
        report.first[label] = statistics.median(t.first_token for t in traces[0::2])
        report.second[label] = statistics.median(t.first_token for t in traces[1::2])
        report.cached[label] = int(statistics.median(t.cached_tokens for t in traces[1::2]))
    return report
