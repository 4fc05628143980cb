"""The serving path end to end: real control plane and agent processes, real models, loopback."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.engine.cpu_path import CpuFeatures
from tests.processes import Agent, ControlPlane, wait_until
from tests.serving_fixtures import StartAgent


def chat_body(model: str, *, max_tokens: int = 8, stream: bool = False) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Write a long story about a ship."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any] | str]:
    """Data payloads of an SSE stream; comment lines come through as ': ...' strings."""
    for line in response.iter_lines():
        if line.startswith(":"):
            yield line
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
            yield data if data == "[DONE]" else json.loads(data)


@contextlib.contextmanager
def chat_stream(
    plane: ControlPlane, model: str, *, max_tokens: int
) -> Iterator[Iterator[dict[str, Any] | str]]:
    """A streaming chat request; its events, held open until the block ends."""
    with httpx.stream(
        "POST",
        plane.inference_url + "/v1/chat/completions",
        json=chat_body(model, max_tokens=max_tokens, stream=True),
        timeout=60,
    ) as response:
        assert response.status_code == 200, response.read()
        # keep this iterator referenced: closing it would close the connection
        yield sse_events(response)


def read_until_first_text(events: Iterator[dict[str, Any] | str]) -> None:
    """Consume a chat stream up to its first chunk with content; the stream stays open."""
    for event in events:
        if isinstance(event, dict) and event["choices"][0]["delta"].get("content"):
            return
    raise AssertionError("the stream ended before any text")


def pool_name(model: Path) -> str:
    return model.stem


def test_agent_registers_its_pool_and_serves_chat(
    control_plane: ControlPlane, start_agent: StartAgent, smollm2_path: Path
) -> None:
    start_agent("a")
    model = pool_name(smollm2_path)
    models = httpx.get(control_plane.inference_url + "/v1/models").json()
    assert [entry["id"] for entry in models["data"]] == [model]

    response = httpx.post(
        control_plane.inference_url + "/v1/chat/completions",
        json=chat_body(model, max_tokens=5),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] == 5

    [pool] = control_plane.pools()
    assert pool["name"] == model and pool["agents_ready"] == 1 and pool["slots_busy"] == 0


def test_stream_of_completion_with_usage(
    control_plane: ControlPlane, start_agent: StartAgent, smollm2_path: Path
) -> None:
    start_agent("a")
    body = {
        "model": pool_name(smollm2_path),
        "prompt": "The capital of France is",
        "max_tokens": 6,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream(
        "POST", control_plane.inference_url + "/v1/completions", json=body, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(response))
    data = [event for event in events if isinstance(event, dict)]
    assert events[-1] == "[DONE]"
    text = "".join(chunk["choices"][0]["text"] for chunk in data if chunk["choices"])
    assert text.strip()
    assert data[-2]["choices"][0]["finish_reason"] == "length"
    assert data[-1]["choices"] == [] and data[-1]["usage"]["completion_tokens"] == 6


def test_unknown_model_and_bad_input_get_openai_errors(
    control_plane: ControlPlane, start_agent: StartAgent, smollm2_path: Path
) -> None:
    start_agent("a")
    url = control_plane.inference_url
    unknown = httpx.post(url + "/v1/chat/completions", json=chat_body("no-such-model"))
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"

    malformed = httpx.post(
        url + "/v1/chat/completions",
        content=b'{"model": ',
        headers={"Content-Type": "application/json"},
    )
    assert malformed.status_code == 400 and malformed.json()["error"]["message"]

    no_messages = httpx.post(
        url + "/v1/chat/completions", json={"model": pool_name(smollm2_path), "messages": []}
    )
    assert no_messages.status_code == 400
    assert no_messages.json()["error"]["param"] == "messages"

    too_large = httpx.post(
        url + "/v1/completions",
        json={"model": pool_name(smollm2_path), "prompt": "x" * (5 * 1024 * 1024)},
    )
    assert too_large.status_code == 413
    assert "error" in too_large.json()

    assert httpx.get(url + "/health").json()["status"] == "ok"
    assert httpx.get(url + "/v1/nope").status_code == 404


def test_overflow_gets_503_and_waiting_too_long_gets_504(
    tmp_path: Path, smollm2_path: Path
) -> None:
    plane = ControlPlane(tmp_path, "--max-buffered-requests", "1", "--buffer-timeout", "2")
    plane.start()
    agent = Agent(plane, tmp_path, "once", smollm2_path)
    try:
        agent.start()
        plane.wait_for_ready_agent("once")
        agent.stop()
        wait_until(lambda: plane.agent("once") is None, what="agent gone")
        model = pool_name(smollm2_path)
        results: dict[str, httpx.Response] = {}

        def waiting_request() -> None:
            results["waiting"] = httpx.post(
                plane.inference_url + "/v1/chat/completions", json=chat_body(model), timeout=30
            )

        waiter = threading.Thread(target=waiting_request)
        waiter.start()
        wait_until(lambda: plane.pools()[0]["requests_buffered"] == 1, what="request buffered")
        overflow = httpx.post(plane.inference_url + "/v1/chat/completions", json=chat_body(model))
        assert overflow.status_code == 503
        assert overflow.json()["error"]["code"] == "buffer_full"
        assert int(overflow.headers["Retry-After"]) >= 1
        waiter.join(30)
        assert results["waiting"].status_code == 504
        assert results["waiting"].json()["error"]["code"] == "buffer_timeout"
    finally:
        agent.stop()
        plane.stop()


def test_stream_waiting_for_capacity_gets_queue_comments_then_tokens(
    control_plane: ControlPlane, start_agent: StartAgent, smollm2_path: Path
) -> None:
    agent = start_agent("late")
    agent.stop()
    wait_until(lambda: control_plane.agent("late") is None, what="agent gone")
    with chat_stream(control_plane, pool_name(smollm2_path), max_tokens=4) as events:
        first = next(events)
        assert isinstance(first, str) and first.startswith(": queued position=1")
        start_agent("rescuer", wait=False)
        rest = list(events)
    assert rest[-1] == "[DONE]"
    chunks = [event for event in rest if isinstance(event, dict)]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_client_disconnect_frees_the_slot(
    control_plane: ControlPlane, start_agent: StartAgent, smollm2_path: Path
) -> None:
    start_agent("a", slots=1)
    model = pool_name(smollm2_path)
    with chat_stream(control_plane, model, max_tokens=900) as events:
        read_until_first_text(events)
        assert control_plane.pools()[0]["slots_busy"] == 1
    wait_until(lambda: control_plane.pools()[0]["slots_busy"] == 0, what="slot freed")
    after = httpx.post(
        control_plane.inference_url + "/v1/chat/completions", json=chat_body(model), timeout=30
    )
    assert after.status_code == 200


def test_agent_killed_before_first_token_request_finished_by_another(
    control_plane: ControlPlane, start_agent: StartAgent, smollm2_path: Path
) -> None:
    doomed = start_agent("doomed", slots=4)
    start_agent("survivor", slots=1)
    doomed.signal(signal.SIGSTOP)
    result: dict[str, httpx.Response] = {}

    def request() -> None:
        result["response"] = httpx.post(
            control_plane.inference_url + "/v1/chat/completions",
            json=chat_body(pool_name(smollm2_path), max_tokens=4),
            timeout=60,
        )

    client = threading.Thread(target=request)
    client.start()
    wait_until(
        lambda: (control_plane.agent("doomed") or {}).get("slots_busy") == 1,
        what="job sent to the frozen agent",
    )
    doomed.kill()
    client.join(60)
    response = result["response"]
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["finish_reason"] == "length"
    counters = control_plane.management_get("/api/v1/pools").json()["counters"]
    assert counters["requeued"] == 1


def test_agent_killed_mid_stream_sends_agent_lost(
    control_plane: ControlPlane, start_agent: StartAgent, smollm2_path: Path
) -> None:
    agent = start_agent("doomed")
    with chat_stream(control_plane, pool_name(smollm2_path), max_tokens=900) as events:
        read_until_first_text(events)
        agent.kill()
        rest = list(events)
    errors = [event for event in rest if isinstance(event, dict) and "error" in event]
    assert errors and errors[0]["error"]["code"] == "agent_lost"
    assert rest[-1] == "[DONE]"


def test_control_plane_restart_agent_reconnects_and_pools_survive(
    control_plane: ControlPlane, start_agent: StartAgent, smollm2_path: Path
) -> None:
    start_agent("steady")
    control_plane.stop()
    control_plane.start()
    model = pool_name(smollm2_path)
    assert [pool["name"] for pool in control_plane.pools()] == [model]
    control_plane.wait_for_ready_agent("steady", timeout=30)
    response = httpx.post(
        control_plane.inference_url + "/v1/chat/completions", json=chat_body(model), timeout=30
    )
    assert response.status_code == 200, response.text
    [record] = control_plane.agents()
    assert record["name"] == "steady" and record["connected"]
    detail = control_plane.management_get(f"/api/v1/agents/{record['id']}").json()
    newest, oldest = detail["connections"]
    assert newest["disconnected_at"] is None
    assert oldest["disconnected_at"] is not None and oldest["disconnect_reason"]
    missing = control_plane.management_get("/api/v1/agents/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "agent_not_found"


def test_agents_report_their_engine_figures(
    control_plane: ControlPlane, start_agent: StartAgent, smollm2_path: Path
) -> None:
    start_agent("busy", slots=2)
    body = chat_body(pool_name(smollm2_path))
    for _ in range(2):  # the second request finds the first one's prompt in the cache
        response = httpx.post(control_plane.inference_url + "/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"] - 1

    def engine() -> dict[str, Any]:
        agent = control_plane.agent("busy")
        assert agent is not None
        figures: dict[str, Any] = agent["engine"] or {}
        return figures

    wait_until(lambda: engine().get("kv_cells_used", 0) > 0, what="engine figures")
    figures = engine()
    assert figures["kv_cells_total"] >= 2 * 1024
    assert figures["active_sequences"] == 0
    assert 0 < figures["prompt_cache_hit_rate"] < 1


def test_agents_report_their_cpu_path(control_plane: ControlPlane, start_agent: StartAgent) -> None:
    """The hello and statuses carry the CPU's features and the buffer types the model got;
    the agents API and the control plane's log show them."""
    start_agent("cpu", slots=1)
    agent = control_plane.agent("cpu")
    assert agent is not None
    cpu = agent["cpu"]
    features = CpuFeatures.of_this_machine()
    assert cpu["features"] == list(features.reported)
    assert cpu["cpu_repack"] == "auto"
    assert cpu["extra_buffers"] is not features.has_amx
    assert cpu["reason"] == ("amx" if features.has_amx else "no amx")
    assert "CPU_Mapped" in cpu["model_buffers"]
    assert "AMX" not in cpu["model_buffers"]
    assert cpu["summary"].startswith("repack off (amx)" if features.has_amx else "repack on")
    assert "weights in CPU_Mapped" in cpu["summary"]
    assert f"cpu {' '.join(features.reported) or 'baseline'}, repack" in control_plane.log(None)
    assert f"agent cpu is ready with 1 slots ({cpu['summary']})" in control_plane.log(None)


def test_agent_with_wrong_token_is_refused(
    control_plane: ControlPlane, tmp_path: Path, smollm2_path: Path
) -> None:
    intruder = Agent(control_plane, tmp_path, "intruder", smollm2_path, token="wrong")
    intruder.start()
    try:
        wait_until(
            lambda: "refused this agent's token" in intruder.log(), what="token refusal logged"
        )
        assert control_plane.agents() == []
    finally:
        intruder.stop()


def test_silent_agent_is_dropped_and_its_waiting_job_served_elsewhere(
    tmp_path: Path, smollm2_path: Path
) -> None:
    plane = ControlPlane(tmp_path, "--agent-timeout", "2")
    plane.start()
    frozen = Agent(plane, tmp_path, "frozen", smollm2_path, slots=4)
    survivor = Agent(plane, tmp_path, "survivor", smollm2_path, slots=1)
    try:
        for agent in (frozen, survivor):
            agent.start()
            plane.wait_for_ready_agent(agent.name)
        frozen.signal(signal.SIGSTOP)
        response = httpx.post(
            plane.inference_url + "/v1/chat/completions",
            json=chat_body(pool_name(smollm2_path), max_tokens=3),
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert plane.agent("frozen") is None
        assert "agent frozen left pool" in plane.log() and "silent for 2s" in plane.log()
    finally:
        frozen.stop()
        survivor.stop()
        plane.stop()


def test_requests_are_routed_to_the_pool_named_by_model(
    control_plane: ControlPlane, start_agent: StartAgent, tiny_model_path: Path, smollm2_path: Path
) -> None:
    start_agent("smol", model=smollm2_path)
    start_agent("tiny", model=tiny_model_path, slots=2)
    names = {
        entry["id"]
        for entry in httpx.get(control_plane.inference_url + "/v1/models").json()["data"]
    }
    assert names == {smollm2_path.stem, tiny_model_path.stem}
    served_by: list[str] = []
    for model in (tiny_model_path.stem, smollm2_path.stem):
        response = httpx.post(
            control_plane.inference_url + "/v1/completions",
            json={"model": model, "prompt": "Once upon", "max_tokens": 3},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.json()["model"] == model
        log = control_plane.log(tail=None)
        dispatches = [line for line in log.splitlines() if "dispatched job" in line]
        served_by.append(dispatches[-1].split(" to agent ")[1].split()[0])
    assert served_by == ["tiny", "smol"]
    pools = {pool["name"]: pool for pool in control_plane.pools()}
    assert pools[tiny_model_path.stem]["slots_total"] == 2
    assert pools[smollm2_path.stem]["slots_total"] == 1


def test_prompt_that_cannot_fit_the_context_is_a_400(
    control_plane: ControlPlane, start_agent: StartAgent, tiny_model_path: Path
) -> None:
    start_agent("tiny", model=tiny_model_path)
    response = httpx.post(
        control_plane.inference_url + "/v1/completions",
        json={"model": tiny_model_path.stem, "prompt": "hello", "max_tokens": 5000},
        timeout=30,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "1024" in error["message"]
    assert control_plane.pools()[0]["slots_busy"] == 0


def test_waiting_client_that_leaves_is_removed_from_the_queue(
    control_plane: ControlPlane, start_agent: StartAgent, tiny_model_path: Path
) -> None:
    agent = start_agent("gone", model=tiny_model_path)
    agent.stop()
    wait_until(lambda: control_plane.agent("gone") is None, what="agent gone")
    body = {"model": tiny_model_path.stem, "prompt": "hi", "max_tokens": 2, "stream": True}
    with httpx.stream(
        "POST", control_plane.inference_url + "/v1/completions", json=body, timeout=30
    ) as response:
        events = sse_events(response)
        assert next(events) == ": queued position=1"
        assert control_plane.pools()[0]["requests_buffered"] == 1
    wait_until(lambda: control_plane.pools()[0]["requests_buffered"] == 0, what="queue emptied")


def test_non_streaming_client_that_leaves_frees_the_slot(
    control_plane: ControlPlane, start_agent: StartAgent, smollm2_path: Path
) -> None:
    start_agent("a", slots=1)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            control_plane.inference_url + "/v1/chat/completions",
            json=chat_body(pool_name(smollm2_path), max_tokens=900),
            timeout=httpx.Timeout(30, read=1.5),
        )
    wait_until(lambda: control_plane.pools()[0]["slots_busy"] == 0, what="slot freed")
    assert "cancelling job" in control_plane.log()


def test_stopped_agent_finishes_its_running_job_then_leaves(
    control_plane: ControlPlane, start_agent: StartAgent, smollm2_path: Path
) -> None:
    agent = start_agent("leaving", slots=2)
    with chat_stream(control_plane, pool_name(smollm2_path), max_tokens=120) as events:
        read_until_first_text(events)
        agent.signal(signal.SIGTERM)
        wait_until(
            lambda: (control_plane.agent("leaving") or {}).get("state") == "draining",
            what="agent draining",
        )
        rest = list(events)
    assert not any(isinstance(event, dict) and "error" in event for event in rest)
    chunks = [event for event in rest if isinstance(event, dict)]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert agent.process is not None and agent.process.wait(timeout=15) == 0
    wait_until(lambda: control_plane.agent("leaving") is None, what="agent left")


def test_many_concurrent_requests_are_all_served_and_slots_return(
    control_plane: ControlPlane, start_agent: StartAgent, tiny_model_path: Path
) -> None:
    for name in ("one", "two"):
        start_agent(name, model=tiny_model_path, slots=2)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def request(index: int) -> None:
        response = httpx.post(
            control_plane.inference_url + "/v1/completions",
            json={"model": tiny_model_path.stem, "prompt": f"request {index}", "max_tokens": 20},
            timeout=60,
        )
        with lock:
            results.append(response)

    clients = [threading.Thread(target=request, args=(index,)) for index in range(24)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(90)
    assert [response.status_code for response in results] == [200] * 24
    assert all(response.json()["usage"]["completion_tokens"] == 20 for response in results)
    [pool] = control_plane.pools()
    assert pool["slots_busy"] == 0 and pool["requests_buffered"] == 0
    counters = control_plane.management_get("/api/v1/pools").json()["counters"]
    assert counters["dispatched"] == counters["finished"] == 24
    log = control_plane.log(tail=None)
    served = [line for line in log.splitlines() if "dispatched job" in line]
    assert {line.split(" to agent ")[1].split()[0] for line in served} == {"one", "two"}
