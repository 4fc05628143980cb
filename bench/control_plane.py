"""The control plane at line rate: requests per second, latency and CPU against LiteLLM's proxy
and a raw mock (the ceiling), tokens per second relayed, and a buffer of many waiters.

No model runs: a fake agent (bench/_cp_fake_agent.py, speaking the real protocol) stands for
the agents, a raw-asyncio mock OpenAI server (bench/_cp_mock_upstream.py) for the model behind
LiteLLM. Every answer is 16 tokens. Figures:

  requests   RPS, p50/p99 and the server's CPU for c=1 and c=50, streamed and not, per target;
             ratios of the control plane to LiteLLM and to the mock
  relay      tokens/s through the control plane: 256 streams, agents of 64 slots
  buffer     N streams waiting for a loading agent: RSS, admission rate, ': queued' punctuality,
             CPU while waiting; then served: FIFO order and none lost

LiteLLM is measured when ``.bench-venv/bin/litellm`` exists (``make bench-control-plane``
installs it there); otherwise it is skipped. The machine is shared: compare figures of one run.

    .venv/bin/python bench/control_plane.py [--quick] [--seconds 5] [--waiters 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._cp_buffer import BufferFigure, in_order, measure, report_gaps
from bench._cp_load import Outcome, closed_loop, request_bytes
from bench._cp_processes import CpuMeter, python_script, started, wait_for_port
from bench._errors import BenchError
from bench._streams import percentile
from tests.processes import AGENT_TOKEN, ControlPlane, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
LITELLM = ROOT / ".bench-venv" / "bin" / "litellm"
SHAPES = [(1, True), (50, True), (1, False), (50, False)]  # (concurrency, stream)

Row = tuple[str, int, bool, Outcome, float]  # target, c, stream, outcome, cpu share


def chat_body(stream: bool, tokens: int = 16) -> dict[str, object]:
    return {
        "model": "bench",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": tokens,
        "stream": stream,
    }


def drive(
    port: int, pid: int, path: str, c: int, stream: bool, seconds: float, token: str = ""
) -> Row:
    request = request_bytes(f"127.0.0.1:{port}", path, chat_body(stream), token)
    meter = CpuMeter(pid)
    meter.start()
    outcome = asyncio.run(closed_loop("127.0.0.1", port, request, c, seconds))
    return "", c, stream, outcome, meter.stop()


@contextlib.contextmanager
def plane_with_agents(
    directory: Path, *, agents: int, slots: int, hold: bool = False, extra: tuple[str, ...] = ()
) -> Iterator[tuple[ControlPlane, Callable[[], None], int]]:
    """A control plane and a fake agent process; yields it, a function that releases held
    agents (``hold``: they are loading until then) and the fake agents' process id."""
    directory.mkdir(parents=True, exist_ok=True)
    plane = ControlPlane(directory, *extra)
    plane.start()
    try:
        args = ["--control-plane", plane.management_url, "--token", AGENT_TOKEN]
        args += ["--agents", str(agents), "--slots", str(slots)] + (["--hold"] if hold else [])
        log = directory / "fake-agent.log"
        with started(python_script("_cp_fake_agent.py", *args), log) as fake:
            wanted = "loading" if hold else "ready"

            def joined() -> bool:
                assert fake.poll() is None, log.read_text()
                found = [a for a in plane.agents() if a["connected"] and a["state"] == wanted]
                return len(found) == agents

            wait_until(joined, timeout=30, what="fake agents")
            yield plane, lambda: fake.send_signal(signal.SIGUSR1), fake.pid
    finally:
        plane.stop()


def request_rows(directory: Path, seconds: float, *, peer: bool) -> list[Row]:
    rows: list[Row] = []
    port = free_port()
    log = directory / "mock.log"
    with started(python_script("_cp_mock_upstream.py", "--port", str(port)), log) as mock:
        wait_for_port(port, mock, "the mock", log)
        for c, stream in SHAPES:
            _, *rest = drive(port, mock.pid, "/v1/chat/completions", c, stream, seconds)
            rows.append(("mock (ceiling)", *rest))  # type: ignore[arg-type]
        if peer and LITELLM.exists():
            try:
                rows += litellm_rows(directory, port, seconds)
            except BenchError as error:  # a broken install: the rest is still worth printing
                print(f"(LiteLLM skipped: {error})")
    with plane_with_agents(directory / "requests", agents=1, slots=64) as (plane, _, _):
        assert plane.process is not None
        for c, stream in SHAPES:
            path = "/v1/chat/completions"
            _, *rest = drive(plane.inference_port, plane.process.pid, path, c, stream, seconds)
            rows.append(("control plane", *rest))  # type: ignore[arg-type]
    return rows


def litellm_rows(directory: Path, upstream: int, seconds: float) -> list[Row]:
    config = directory / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: bench\n    litellm_params:\n"
        f"      model: openai/bench\n      api_base: http://127.0.0.1:{upstream}/v1\n"
        "      api_key: none\n"
    )
    port = free_port()
    args = [str(LITELLM), "--config", str(config), "--port", str(port), "--num_workers", "1"]
    key = "sk-bench-" + secrets.token_hex(16)
    env = {"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "LITELLM_MASTER_KEY": key}
    log = directory / "litellm.log"
    rows: list[Row] = []
    with started(args, log, env) as proxy:
        wait_for_port(port, proxy, "LiteLLM", log)
        for c, stream in SHAPES:
            _, *rest = drive(port, proxy.pid, "/v1/chat/completions", c, stream, seconds, key)
            rows.append(("LiteLLM", *rest))  # type: ignore[arg-type]
    return rows


def relay_figure(directory: Path, seconds: float, streams: int = 256, tokens: int = 64) -> str:
    with plane_with_agents(directory / "relay", agents=streams // 64, slots=64) as (plane, _, fake):
        assert plane.process is not None
        port, pid = plane.inference_port, plane.process.pid
        fake_meter = CpuMeter(fake)
        fake_meter.start()
        request = request_bytes(
            f"127.0.0.1:{port}", "/v1/chat/completions", chat_body(True, tokens)
        )
        meter = CpuMeter(pid)
        meter.start()
        outcome = asyncio.run(closed_loop("127.0.0.1", port, request, streams, seconds, 1.0))
        cpu, fake_cpu = meter.stop(), fake_meter.stop()
    rate = outcome.pieces / seconds
    return (
        f"relay: {rate:,.0f} tokens/s through the control plane ({streams} streams of {tokens} "
        f"tokens, agents of 64 slots), CPU {cpu * 100:.0f}% of a core, "
        f"{rate / max(cpu, 1e-9):,.0f} tokens per CPU-second, "
        f"{outcome.chunks_per_answer:.1f} body chunks per stream, {outcome.failures} failed "
        f"(fake agents' CPU {fake_cpu * 100:.0f}%)"
    )


def buffer_figure(directory: Path, waiters: int, interval: float, wait: float) -> BufferFigure:
    extra: tuple[str, ...] = ("--max-buffered-requests", str(waiters * 2))
    extra += ("--buffer-timeout", "600", "--queue-report-interval", str(interval))
    held = plane_with_agents(directory / "buffer", agents=1, slots=64, hold=True, extra=extra)
    with held as (plane, release, _):
        assert plane.process is not None
        everyone, readings = asyncio.run(
            measure(plane.inference_port, plane.process.pid, waiters, interval, wait, release)
        )
        agent_log = (directory / "buffer" / "fake-agent.log").read_text()
    first_job = [float(line.split()[1]) for line in agent_log.splitlines() if "first_job" in line]
    return BufferFigure(
        waiters=waiters,
        admitted=int(readings["admitted"]),
        admission_seconds=readings["admission_seconds"],
        rss_before=int(readings["rss_before"]),
        rss_waiting=int(readings["rss_waiting"]),
        rss_drained=int(readings["rss_drained"]),
        cpu_admitting=readings["cpu_admitting"],
        cpu_waiting=readings["cpu_waiting"],
        report_interval=interval,
        intervals=report_gaps(everyone, readings["all_admitted_at"], readings["released_at"]),
        in_order=in_order(everyone),
        lost=sum(1 for waiter in everyone if not waiter.done or not waiter.sequence),
        drain_seconds=readings["drain_seconds"],
        first_job_after_ready=first_job[0] if first_job else None,
    )


def print_requests(rows: list[Row]) -> None:
    print(f"{'target':<16}{'c':>4} {'mode':<7}{'RPS':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU':>6}")
    for target, c, stream, outcome, cpu in rows:
        p50 = percentile(outcome.latencies, 0.5) * 1000
        p99 = percentile(outcome.latencies, 0.99) * 1000
        mode = "stream" if stream else "whole"
        failed = f"  {outcome.failures} failed: {outcome.first_failure[:80]!r}" * bool(
            outcome.failures
        )
        print(
            f"{target:<16}{c:>4} {mode:<7}{outcome.rps:>9,.0f}{p50:>9.2f}{p99:>9.2f}"
            f"{cpu * 100:>5.0f}%{failed}"
        )
    by = {(target, c, stream): outcome for target, c, stream, outcome, _ in rows}
    for stream in (True, False):
        plane = by[("control plane", 50, stream)].rps
        mode = "stream" if stream else "whole"
        ceiling = by[("mock (ceiling)", 50, stream)].rps
        line = f"c=50 {mode}: control plane = {plane / ceiling * 100:.1f}% of the ceiling"
        peer = by.get(("LiteLLM", 50, stream))
        if peer is not None and peer.rps:
            line += f", {plane / peer.rps:.1f}x LiteLLM"
        print(line)
    added = percentile(by[("control plane", 1, True)].latencies, 0.5) - percentile(
        by[("mock (ceiling)", 1, True)].latencies, 0.5
    )
    print(f"c=1 stream: control plane adds {added * 1000:.2f} ms to p50")
    chunks = [by[("control plane", c, True)].chunks_per_answer for c in (1, 50)]
    print(
        "control plane stream: body chunks per answer (16 tokens): "
        f"c=1 {chunks[0]:.1f}, c=50 {chunks[1]:.1f}"
    )
    if not any(target == "LiteLLM" for target, *_ in rows):
        print("(no LiteLLM figures: `make bench-control-plane` installs it in .bench-venv)")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, 1,000 waiters")
    parser.add_argument("--seconds", type=float, help="per measurement (5; quick: 0.8)")
    parser.add_argument("--waiters", type=int, help="in the buffer (10,000; quick: 1,000)")
    parser.add_argument("--report-interval", type=float, help="of ': queued' (3 s; quick: 1 s)")
    parser.add_argument("--only", choices=("requests", "relay", "buffer"), action="append")
    parser.add_argument("--no-peer", action="store_true", help="leave LiteLLM out")
    args = parser.parse_args()
    quick = args.quick
    seconds = args.seconds or (0.8 if quick else 5.0)
    waiters = args.waiters or (1000 if quick else 10_000)
    interval = args.report_interval or (1.0 if quick else 3.0)
    only = set(args.only or ("requests", "relay", "buffer"))
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        if "requests" in only:
            print_requests(request_rows(directory, seconds, peer=not args.no_peer))
        if "relay" in only:
            print(relay_figure(directory, seconds))
        if "buffer" in only:
            print("buffer:")
            for line in buffer_figure(directory, waiters, interval, interval * 3.5).lines():
                print("  " + line)


if __name__ == "__main__":
    main()
