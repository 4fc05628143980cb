"""A pool's model swapped under traffic, with real processes and real models."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.file_server import FileServer
from tests.processes import ADMIN_HEADERS, ControlPlane, wait_until
from tests.serving_fixtures import StartAgent


class Traffic:
    """Threads that stream chat completions from ``pool`` back to back, recording each one."""

    def __init__(self, plane: ControlPlane, pool: str, clients: int) -> None:
        self.url = plane.inference_url + "/v1/chat/completions"
        self.pool = pool
        self.stop = threading.Event()
        self.results: list[tuple[int, bool, str]] = []  # status, finished cleanly, text
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self) -> None:
        body = {
            "model": self.pool,
            "messages": [{"role": "user", "content": "Tell me about paddles."}],
            "max_tokens": 24,
            "stream": True,
        }
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                self.results.append(self._one(client, body))

    def _one(self, client: httpx.Client, body: dict[str, Any]) -> tuple[int, bool, str]:
        text, finished = "", False
        with client.stream("POST", self.url, json=body) as response:
            for line in response.iter_lines():
                if line == "data: [DONE]":
                    finished = True
                elif line.startswith("data: "):
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        return response.status_code, False, json.dumps(chunk)
                    text += chunk["choices"][0]["delta"].get("content") or ""
        return response.status_code, finished, text


class StateWatch:
    """Polls the agents' states, keeping each agent's sequence of distinct states."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.stop = threading.Event()
        self.sequences: dict[str, list[str]] = {}
        self.not_ready_together = 0  # polls that saw every agent unable to take work
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> StateWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with httpx.Client(headers=ADMIN_HEADERS) as client:
            while not self.stop.is_set():
                agents = client.get(self.plane.management_url + "/api/v1/agents").json()["data"]
                live = [agent for agent in agents if agent["connected"]]
                for agent in live:
                    states = self.sequences.setdefault(agent["name"], [])
                    if not states or states[-1] != agent["state"]:
                        states.append(agent["state"])
                if len(live) > 1 and all(agent["state"] != "ready" for agent in live):
                    self.not_ready_together += 1
                time.sleep(0.01)


def _in_order(sequence: list[str], expected: list[str]) -> bool:
    remaining = iter(sequence)
    return all(state in remaining for state in expected)


def _swaps(plane: ControlPlane, pool: str, outcome: str) -> float:
    text = plane.management_get("/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "paddler_model_swaps":
            for sample in family.samples:
                labels = sample.labels
                if sample.name.endswith("_total") and labels == {"pool": pool, "outcome": outcome}:
                    return sample.value
    return 0.0


def test_swapping_the_model_under_load_fails_no_request(
    control_plane: ControlPlane, start_agent: StartAgent, tiny_model_path: Path, smollm2_path: Path
) -> None:
    """SmolLM2 -> the tiny model, downloaded slowly over http: SmolLM2's jobs make each drain
    last, the download makes the first agent's loading last (the second finds it cached)."""
    pool = smollm2_path.stem
    agents = {name: start_agent(name, slots=2) for name in ("first", "second")}
    files = FileServer({"tiny.gguf": tiny_model_path.read_bytes()}, bytes_per_second=300_000)
    with files, StateWatch(control_plane) as watch, Traffic(control_plane, pool, 5) as traffic:
        wait_until(lambda: len(traffic.results) >= 6, timeout=60, what="traffic before the swap")
        response = httpx.put(
            f"{control_plane.management_url}/api/v1/pools/{pool}/desired-state",
            headers=ADMIN_HEADERS,
            json={"model_source": files.url("tiny.gguf"), "slots": 2},
        )
        assert response.status_code == 200, response.text
        swapped_at = len(traffic.results)

        def both_swapped() -> bool:
            agents = httpx.get(
                f"{control_plane.management_url}/api/v1/pools/{pool}", headers=ADMIN_HEADERS
            ).json()["agents"]
            return len(agents) == 2 and all(
                agent["applied_version"] == 1
                and agent["state"] == "ready"
                and agent["model"] == "tiny"
                for agent in agents
            )

        wait_until(both_swapped, timeout=120, what=f"both agents swapped\n{control_plane.log()}")
        wait_until(lambda: len(traffic.results) >= swapped_at + 6, timeout=60, what="traffic after")

    failures = [result for result in traffic.results if result[:2] != (200, True)]
    assert not failures, (failures, control_plane.log())
    assert len(traffic.results) >= 12
    sequences = watch.sequences
    for name in ("first", "second"):
        assert _in_order(sequences[name], ["ready", "draining", "ready"]), sequences
        assert "desired state v1: draining, then loading" in agents[name].log(None)
    assert any(_in_order(states, ["draining", "loading", "ready"]) for states in sequences.values())
    assert watch.not_ready_together == 0, watch.sequences  # one agent at a time
    assert _swaps(control_plane, pool, "succeeded") == 2
    pool_view = control_plane.management_get(f"/api/v1/pools/{pool}").json()
    assert pool_view["model_source"] == files.url("tiny.gguf")
    assert pool_view["agents_applying"] == []


def fail_the_only_agents_swap(
    control_plane: ControlPlane, start_agent: StartAgent, tiny_model_path: Path, tmp_path: Path
) -> Callable[[], dict[str, Any]]:
    """Start one agent on the tiny model, then ask its pool for a model file that does not
    exist; returns once the agent reports ``error``, with a way to read the agent's view."""
    pool = tiny_model_path.stem
    start_agent("only", model=tiny_model_path, slots=1)
    url = f"{control_plane.management_url}/api/v1/pools/{pool}/desired-state"
    missing = tmp_path / "missing.gguf"
    assert httpx.put(url, headers=ADMIN_HEADERS, json={"model_source": str(missing), "slots": 1})

    def agent() -> dict[str, Any]:
        found = control_plane.agent("only")
        assert found is not None
        return found

    wait_until(lambda: agent()["state"] == "error", timeout=60, what="the agent in error")
    return agent


def test_a_model_that_cannot_load_leaves_the_agent_in_error_until_fixed(
    control_plane: ControlPlane, start_agent: StartAgent, tiny_model_path: Path, tmp_path: Path
) -> None:
    pool = tiny_model_path.stem
    url = f"{control_plane.management_url}/api/v1/pools/{pool}/desired-state"
    agent = fail_the_only_agents_swap(control_plane, start_agent, tiny_model_path, tmp_path)
    assert any("model file not found" in issue for issue in agent()["issues"]), agent()
    assert agent()["applied_version"] == 0
    assert _swaps(control_plane, pool, "failed") == 1

    fixed = httpx.put(
        url, headers=ADMIN_HEADERS, json={"model_source": str(tiny_model_path), "slots": 1}
    )
    assert fixed.status_code == 200
    wait_until(
        lambda: agent()["state"] == "ready" and agent()["applied_version"] == 2,
        timeout=60,
        what="the agent ready again",
    )
    answer = httpx.post(
        control_plane.inference_url + "/v1/completions",
        json={"model": pool, "prompt": "Hi", "max_tokens": 3},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    fleet = _first_fleet_event(control_plane)
    assert [(entry["name"], entry["desired_version"]) for entry in fleet["pools"]] == [(pool, 2)]
    assert [(a["name"], a["state"], a["applied_version"]) for a in fleet["agents"]] == [
        ("only", "ready", 2)
    ]


def _first_fleet_event(plane: ControlPlane) -> dict[str, Any]:
    url = plane.management_url + "/api/v1/events"
    with httpx.stream("GET", url, headers=ADMIN_HEADERS, timeout=10) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                event: dict[str, Any] = json.loads(line[6:])
                return event
    raise AssertionError("no fleet event")


def test_an_embeddings_agent_serves_embeddings_of_the_new_model(
    control_plane: ControlPlane, start_agent: StartAgent, tiny_model_path: Path, smollm2_path: Path
) -> None:
    pool = smollm2_path.stem
    start_agent("embedder", embeddings=True)

    def dimensions() -> int:
        response = httpx.post(
            control_plane.inference_url + "/v1/embeddings",
            json={"model": pool, "input": "paddles", "encoding_format": "float"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return len(response.json()["data"][0]["embedding"])

    before = dimensions()
    response = httpx.put(
        f"{control_plane.management_url}/api/v1/pools/{pool}/desired-state",
        headers=ADMIN_HEADERS,
        json={"model_source": str(tiny_model_path), "slots": 1},
    )
    assert response.status_code == 200, response.text

    def swapped() -> bool:
        agent = control_plane.agent("embedder")
        return agent is not None and (agent["state"], agent["applied_version"]) == ("ready", 1)

    wait_until(swapped, timeout=60, what="the swap")
    assert dimensions() != before  # the tiny model's vectors are shorter than SmolLM2's
