"""Time to first token from zero agents, with the local provider, beside the bare load time.

In one run:
  1. the bare cost of an agent's start, in a fresh Python process: importing the engine, then
     loading the model (``Engine.load``: weights and context), each timed;
  2. a real control plane with ``--provider local --min-agents 0`` and no agent: one streaming
     request is held while the autoscaler launches an agent, and the time to its first token
     is measured by the client, with the breakdown the control plane stored for the instance
     (launch call → agent registered → model loaded → first token).

    .venv/bin/python bench/cold_start.py [--model FILE.gguf] [--slots 4] [--repeat 1]

The issue's goal: the first token within the bare model load + 1.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from control_plane.providers.local import LocalProvider, LocalSettings  # noqa: E402
from paddler.bundled import bundled_model_path  # noqa: E402
from tests.processes import free_ports  # noqa: E402

GOAL_MARGIN_SECONDS = 1.5
ADMIN_TOKEN = "bench-admin-token"

BARE_LOAD = """
import asyncio, json, sys, threading, time
started = time.perf_counter()
from agent.engine.engine import Engine
from paddler.protocol import ChatMessage, GenerationRequest, SamplingParams
imported = time.perf_counter()
engine = Engine(__import__("pathlib").Path(sys.argv[1]), int(sys.argv[2]), context_size=1024)
asyncio.run(engine.load())
loaded = time.perf_counter()
request = GenerationRequest(
    kind="chat",
    messages=(ChatMessage(role="user", content="Say hello."),),
    sampling=SamplingParams(max_tokens=1),
)
asyncio.run(engine.generate(request, lambda text: None, threading.Event()))
generated = time.perf_counter()
print(json.dumps({"import": imported - started, "load": loaded - imported,
                  "first_token": generated - loaded}))
"""


def bare_load(model: Path, slots: int) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", BARE_LOAD, str(model), str(slots)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    seconds: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    seconds["process"] = time.perf_counter() - started
    return seconds


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the control plane exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the control plane did not start within 30s")


def stored_instance(management: int) -> dict[str, Any]:
    """The instance as the control plane stored it, once its first token is recorded."""
    url = f"http://127.0.0.1:{management}/api/v1/instances"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(url, headers=headers)
        response.raise_for_status()
        instance: dict[str, Any] = response.json()["data"][0]
        if instance["first_token_at"] is not None or time.monotonic() > deadline:
            return instance
        time.sleep(0.1)


def cold_start(model: Path, slots: int, directory: Path) -> dict[str, Any]:
    inference, management = free_ports(2)
    cluster = f"bench-{os.getpid()}"
    log = directory / "control-plane.log"
    args = [
        *(sys.executable, "-m", "paddler", "control-plane"),
        *("--inference-addr", f"127.0.0.1:{inference}"),
        *("--management-addr", f"127.0.0.1:{management}"),
        *("--state-dir", str(directory / "state"), "--agent-token", "bench"),
        *("--admin-token", ADMIN_TOKEN),
        *("--provider", "local", "--min-agents", "0", "--cluster", cluster),
        *("--agent-model", str(model), "--agent-slots", str(slots)),
        *("--agent-args", "--context-size 1024", "--log-level", "warning"),
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_healthy(f"http://127.0.0.1:{management}", process, log)
        body = {
            "model": model.stem,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 8,
            "stream": True,
        }
        started = time.perf_counter()
        first_token = None
        url = f"http://127.0.0.1:{inference}/v1/chat/completions"
        with httpx.stream("POST", url, json=body, timeout=300) as response:
            for line in response.iter_lines():
                if first_token is None and '"content"' in line and '"content":""' not in line:
                    first_token = time.perf_counter() - started
        return {"client_first_token": first_token, "instance": stored_instance(management)}
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        provider = LocalProvider(LocalSettings(state_dir=directory / "state", cluster=cluster))
        for instance in provider.list_instances():
            provider.terminate(instance.provider_id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: SmolLM2)")
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="runs; medians are reported")
    args = parser.parse_args()
    model: Path = (args.model or bundled_model_path()).resolve()

    bare_runs, cold_runs = [], []
    for _ in range(args.repeat):
        bare_runs.append(bare_load(model, args.slots))
        with tempfile.TemporaryDirectory(prefix="paddler-cold-start-") as directory:
            cold_runs.append(cold_start(model, args.slots, Path(directory)))

    def median(values: list[float | None]) -> float:
        present = [value for value in values if value is not None]
        return statistics.median(present) if present else float("nan")

    keys = ("import", "load", "first_token", "process")
    bare = {key: median([run[key] for run in bare_runs]) for key in keys}
    stages = ("registered", "model_loaded", "first_token")
    breakdown = {
        stage: median([run["instance"]["cold_start_seconds"][stage] for run in cold_runs])
        for stage in stages
    }
    client = median([run["client_first_token"] for run in cold_runs])

    print(f"cold start of {model.name}, {args.slots} slots, median of {args.repeat} run(s)\n")
    print("bare agent start (fresh process, same machine, same run)")
    print(f"  import the engine         {bare['import']:7.2f} s")
    print(f"  load the model            {bare['load']:7.2f} s")
    print(f"  then one token            {bare['first_token']:7.2f} s")
    print(f"  whole process             {bare['process']:7.2f} s\n")
    print("from zero agents, through the control plane (seconds since the launch call)")
    print(f"  agent registered (hello)  {breakdown['registered']:7.2f} s")
    print(f"  model loaded (ready)      {breakdown['model_loaded']:7.2f} s")
    print(f"  first token               {breakdown['first_token']:7.2f} s")
    print(f"  first token, client-side  {client:7.2f} s\n")
    goal = bare["load"] + GOAL_MARGIN_SECONDS
    verdict = "PASS" if client <= goal else "FAIL"
    print(
        f"goal: first token within the bare model load + {GOAL_MARGIN_SECONDS:g} s "
        f"= {goal:.2f} s: {verdict} ({client:.2f} s; overhead over the bare process "
        f"{client - bare['process']:+.2f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
