"""Agents that stop or go silent under running requests: real control plane and agent
processes, real models, loopback. Every request ends whole or with an explicit error."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx

from tests.processes import Agent, ControlPlane, wait_until
from tests.test_serving import chat_body, chat_stream, pool_name, read_until_first_text


def test_agent_stopped_past_its_grace_answers_errors_not_cut_text(
    control_plane: ControlPlane, tmp_path: Path, smollm2_path: Path
) -> None:
    agent = Agent(control_plane, tmp_path, "hasty", smollm2_path, slots=2)
    agent.args += ["--shutdown-grace", "0.5"]
    agent.start()
    try:
        control_plane.wait_for_ready_agent("hasty")
        model = pool_name(smollm2_path)
        result: dict[str, httpx.Response] = {}

        def non_streaming() -> None:
            result["response"] = httpx.post(
                control_plane.inference_url + "/v1/chat/completions",
                json=chat_body(model, max_tokens=900),
                timeout=60,
            )

        client = threading.Thread(target=non_streaming)
        with chat_stream(control_plane, model, max_tokens=900) as events:
            read_until_first_text(events)
            client.start()
            wait_until(
                lambda: (control_plane.agent("hasty") or {}).get("slots_busy") == 2,
                what="both requests on the agent",
            )
            for _ in range(20):  # both sequences are past their prompts by now
                next(events)
            agent.signal(signal.SIGTERM)
            rest = list(events)
        client.join(60)
    finally:
        agent.stop()
    chunks = [event for event in rest if isinstance(event, dict) and "choices" in event]
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in chunks)
    errors = [event["error"] for event in rest if isinstance(event, dict) and "error" in event]
    assert [error["code"] for error in errors] == ["shutdown"]
    assert rest[-1] == "[DONE]"
    response = result["response"]
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "shutdown"


def test_agent_that_never_answers_is_given_up_and_keep_alives_flow(
    tmp_path: Path, smollm2_path: Path
) -> None:
    plane = ControlPlane(
        tmp_path,
        "--agent-timeout",
        "120",
        "--first-token-timeout",
        "4",
        "--keepalive-interval",
        "0.5",
    )
    plane.start()
    stuck = Agent(plane, tmp_path, "stuck", smollm2_path, slots=4)
    healthy = Agent(plane, tmp_path, "healthy", smollm2_path, slots=1)
    try:
        for agent in (stuck, healthy):
            agent.start()
            plane.wait_for_ready_agent(agent.name)
        stuck.signal(signal.SIGSTOP)  # connected, never answering, not yet dropped
        with chat_stream(plane, pool_name(smollm2_path), max_tokens=5) as events:
            received = list(events)
        assert plane.agent("stuck") is not None, "given up on for the job, not dropped"
    finally:
        stuck.stop()
        healthy.stop()
        plane.stop()
    keepalives = [event for event in received if event == ": keep-alive"]
    assert len(keepalives) >= 3
    assert not any(isinstance(event, dict) and "error" in event for event in received)
    chunks = [event for event in received if isinstance(event, dict)]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    log = plane.log(tail=None)
    assert "agent stuck sent nothing for job" in log
    dispatches = [line for line in log.splitlines() if "dispatched job" in line]
    assert [line.split(" to agent ")[1].split()[0] for line in dispatches] == ["stuck", "healthy"]


def test_started_stream_whose_agent_stalls_ends_with_an_error(
    tmp_path: Path, smollm2_path: Path
) -> None:
    plane = ControlPlane(
        tmp_path, "--agent-timeout", "120", "--stall-timeout", "3", "--keepalive-interval", "0.5"
    )
    plane.start()
    agent = Agent(plane, tmp_path, "stalling", smollm2_path, slots=1)
    try:
        agent.start()
        plane.wait_for_ready_agent("stalling")
        with chat_stream(plane, pool_name(smollm2_path), max_tokens=900) as events:
            read_until_first_text(events)
            agent.signal(signal.SIGSTOP)
            rest = list(events)
    finally:
        agent.stop()
        plane.stop()
    assert ": keep-alive" in rest
    errors = [event["error"] for event in rest if isinstance(event, dict) and "error" in event]
    assert [error["code"] for error in errors] == ["agent_timeout"]
    chunks = [event for event in rest if isinstance(event, dict) and "choices" in event]
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in chunks)
    assert rest[-1] == "[DONE]"
