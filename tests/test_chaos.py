"""Chaos: two real agents (the tiny model) are SIGKILLed, SIGSTOPped and SIGTERMed in turn, and
restarted, while eight clients stream completions for a minute. Every request must end with
its whole answer or an explicit error event, none may hang, and none may end as if whole with
cut text."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.processes import Agent, ControlPlane, wait_until

CLIENTS = 8
CHAOS_SECONDS = 60.0
STOPPED_SECONDS = 30.0  # past --agent-timeout: the control plane drops a stopped agent
# (second of the run, signal, agent): one agent hurt at a time, the other serving meanwhile
SCHEDULE = (
    (5, "SIGKILL", "one"),
    (10, "SIGSTOP", "two"),  # for STOPPED_SECONDS
    (42, "SIGTERM", "one"),
    (47, "SIGKILL", "two"),
    (52, "SIGTERM", "two"),
)
# The longest a request may take: a full buffer wait, then a first-token deadline, then its
# tokens. Any silence longer than READ_TIMEOUT (keep-alives and queue comments come every
# second or two) is a hang.
REQUEST_DEADLINE_SECONDS = 20 + 8 + 30
READ_TIMEOUT_SECONDS = 15.0


@dataclass
class Ending:
    kind: str  # "whole", "error", or "broken" (a failure of the guarantee)
    detail: str


def stream_completion(client: httpx.Client, model: str, max_tokens: int) -> Ending:
    body = {
        "model": model,
        "prompt": "Once upon a time",
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with client.stream("POST", "/v1/completions", json=body) as response:
        if response.status_code != 200:
            error = json.loads(response.read())["error"]
            return Ending("error", f"{response.status_code} {error['code']}")
        return read_stream(response, max_tokens)


def read_stream(response: httpx.Response, max_tokens: int) -> Ending:
    finish_reasons: list[str] = []
    usage: dict[str, Any] | None = None
    error_codes: list[str] = []
    done = False
    for line in response.iter_lines():
        if not line.startswith("data: "):
            continue
        data = line.removeprefix("data: ")
        if data == "[DONE]":
            done = True
            break
        event = json.loads(data)
        if "error" in event:
            error_codes.append(event["error"]["code"])
        elif event.get("usage"):
            usage = event["usage"]
        else:
            finish_reasons += [c["finish_reason"] for c in event["choices"] if c["finish_reason"]]
    if not done:
        return Ending("broken", "the stream ended without [DONE]")
    if error_codes:
        if finish_reasons or len(error_codes) > 1:
            return Ending("broken", f"errors {error_codes} after finish {finish_reasons}")
        return Ending("error", error_codes[0])
    # the tiny model never ends a generation on its own: anything short of max_tokens is cut
    if usage is None or finish_reasons != ["length"] or usage["completion_tokens"] != max_tokens:
        return Ending("broken", f"cut: finish {finish_reasons}, usage {usage} of {max_tokens}")
    return Ending("whole", f"{usage['completion_tokens']} tokens")


def client_loop(
    plane: ControlPlane, model: str, index: int, until: float, endings: list[Ending]
) -> None:
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_SECONDS)
    with httpx.Client(base_url=plane.inference_url, timeout=timeout) as client:
        request = 0
        while time.monotonic() < until:
            max_tokens = 200 + (index * 37 + request * 61) % 400
            request += 1
            started = time.monotonic()
            try:
                ending = stream_completion(client, model, max_tokens)
            except httpx.TimeoutException as error:
                ending = Ending("broken", f"hung: {type(error).__name__}")
            except httpx.TransportError as error:
                ending = Ending("broken", f"connection failed: {error!r}")
            elapsed = time.monotonic() - started
            if elapsed > REQUEST_DEADLINE_SECONDS:
                ending = Ending("broken", f"took {elapsed:.0f}s ({ending.detail})")
            endings.append(ending)


class Faults:
    """Hurts the agents as SCHEDULE says; an agent that exited is started again at once."""

    def __init__(self, make_agent: Callable[[str], Agent], names: tuple[str, ...]) -> None:
        self._make_agent = make_agent
        self.agents = {name: make_agent(name) for name in names}
        self.done: Counter[str] = Counter()

    def run(self, started: float) -> None:
        for at, signal_name, name in SCHEDULE:
            time.sleep(max(0.0, started + at - time.monotonic()))
            agent = self.agents[name]
            signum = signal.Signals[signal_name]
            agent.signal(signum)
            if signum == signal.SIGSTOP:
                time.sleep(STOPPED_SECONDS)
                agent.signal(signal.SIGCONT)
            else:
                assert agent.process is not None
                agent.process.wait(timeout=30)
                self.agents[name] = self._make_agent(name)
            self.done[signal_name] += 1


def test_requests_end_whole_or_with_an_error_while_agents_fail(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    plane = ControlPlane(
        tmp_path,
        "--buffer-timeout",
        "20",
        "--first-token-timeout",
        "8",
        "--stall-timeout",
        "8",
        "--keepalive-interval",
        "1",
        "--queue-report-interval",
        "1",
    )
    plane.start()

    def make_agent(name: str) -> Agent:
        agent = Agent(plane, tmp_path, name, tiny_model_path, slots=2)
        agent.args += ["--shutdown-grace", "0"]  # a SIGTERM cuts its running requests short
        agent.start()
        return agent

    faults = Faults(make_agent, ("one", "two"))
    endings: list[Ending] = []
    try:
        for name in faults.agents:
            plane.wait_for_ready_agent(name)
        started = time.monotonic()
        until = started + CHAOS_SECONDS
        clients = [
            threading.Thread(
                target=client_loop, args=(plane, tiny_model_path.stem, index, until, endings)
            )
            for index in range(CLIENTS)
        ]
        for client in clients:
            client.start()
        faults.run(started)
        for client in clients:
            client.join(REQUEST_DEADLINE_SECONDS + 30)
        assert not any(client.is_alive() for client in clients), "a client never returned"
        for name in faults.agents:
            plane.wait_for_ready_agent(name)
        wait_until(lambda: plane.pools()[0]["slots_busy"] == 0, what="every slot free again")
    finally:
        for agent in faults.agents.values():
            agent.stop()
        plane.stop()
    kinds = Counter(ending.kind for ending in endings)
    broken = [ending.detail for ending in endings if ending.kind == "broken"]
    errors = Counter(ending.detail for ending in endings if ending.kind == "error")
    summary = f"{kinds}; errors {dict(errors)}; faults {dict(faults.done)}"
    assert broken == [], f"{broken[:10]}; {summary}"
    assert kinds["whole"] >= 50, summary
    assert set(faults.done) == {"SIGKILL", "SIGSTOP", "SIGTERM"}, summary
    print(summary)
