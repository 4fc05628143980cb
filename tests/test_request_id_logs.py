"""A client's X-Request-Id in the JSON logs of the control plane and of the agent serving it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.processes import Agent, ControlPlane

REQUEST_ID = "trace-me-42"


def json_lines(log: str) -> list[dict[str, Any]]:
    lines = []
    for line in log.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def tagged_messages(log: str) -> list[str]:
    return [line["message"] for line in json_lines(log) if line.get("request_id") == REQUEST_ID]


def test_the_request_id_travels_from_client_to_agent_logs_and_back(
    tmp_path: Path, smollm2_path: Path
) -> None:
    plane = ControlPlane(tmp_path, "--log-format", "json", "--log-level", "debug")
    plane.start()
    agent = Agent(plane, tmp_path, "traced", smollm2_path)
    agent.env["PADDLER_LOG_FORMAT"] = "json"
    try:
        agent.start()
        plane.wait_for_ready_agent("traced")
        response = httpx.post(
            plane.inference_url + "/v1/chat/completions",
            json={
                "model": smollm2_path.stem,
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 4,
            },
            headers={"X-Request-Id": REQUEST_ID},
            timeout=60,
        )
        assert response.status_code == 200
        assert response.headers["X-Request-Id"] == REQUEST_ID
    finally:
        agent.stop()
        plane.stop()

    control_plane_lines = tagged_messages(plane.log(tail=None))
    assert any(message.startswith("dispatched job") for message in control_plane_lines)
    assert any(
        message.startswith("job ") and "finished" in message for message in control_plane_lines
    )
    agent_lines = tagged_messages(agent.log(tail=None))
    assert any(message.startswith("running job") for message in agent_lines), agent.log()
    assert any(message.startswith("job ") and " done: " in message for message in agent_lines)
    every_line = json_lines(plane.log(tail=None))
    assert every_line and all(
        {"time", "level", "logger", "message"} <= set(line) for line in every_line
    )
