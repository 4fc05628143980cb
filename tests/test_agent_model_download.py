"""An agent given an s3:// model (LocalStack S3) joins a real control plane, reports the
download's progress while ``loading``, then serves; a model it cannot fetch is an issue it
reports, not a crash."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.localstack_fixtures import LocalStack, localstack
from tests.processes import AGENT_TOKEN, ControlPlane, ServerProcess, wait_until

__all__ = ["localstack"]  # the session fixture, imported for pytest


def start_agent(
    plane: ControlPlane, localstack: LocalStack, directory: Path, name: str, model: str
) -> ServerProcess:
    agent = ServerProcess(
        [
            *("agent", "--control-plane", plane.management_url, "--name", name),
            *("--model", model, "--model-cache", str(directory / "cache")),
            *("--slots", "1", "--threads", "1", "--context-size", "512"),
        ],
        directory / f"agent-{name}.log",
        env={
            "PADDLER_TOKEN": AGENT_TOKEN,
            "AWS_ENDPOINT_URL": localstack.endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": localstack.region,
        },
    )
    agent.start()
    return agent


def wait_for(agent: ServerProcess, ready: Callable[[], bool], timeout: float, what: str) -> None:
    """``wait_until`` whose failure shows the agent's log as it is then, not as it was at the
    start of the wait."""
    try:
        wait_until(ready, timeout=timeout, what=what)
    except AssertionError as error:
        raise AssertionError(f"{error}\nagent log:\n{agent.log()}") from None


def test_agent_downloads_its_model_from_s3_and_serves(
    localstack: LocalStack, control_plane: ControlPlane, tmp_path: Path
) -> None:
    url = localstack.seeded["model_url"] + "#sha256=" + localstack.seeded["model_sha256"]
    agent = start_agent(control_plane, localstack, tmp_path, "s3-agent", url)
    seen: list[tuple[str, float | None]] = []

    def ready() -> bool:
        assert agent.running, agent.log()
        view = control_plane.agent("s3-agent")
        if view is not None:
            seen.append((view["state"], view["download_progress"]))
        return view is not None and view["state"] == "ready"

    try:
        wait_for(agent, ready, timeout=120, what="the agent to be ready")
        progress = [fraction for _, fraction in seen if fraction is not None]
        assert progress == sorted(progress) and progress[-1] == 1.0
        assert {state for state, _ in seen} <= {"loading", "ready"}
        assert "model download 100%" in agent.log()

        [pool] = [p for p in control_plane.pools() if p["name"] == "SmolLM2-135M-Instruct.Q4_1"]
        assert pool["model_source"] == url, "hello carries the source as given"
        response = httpx.post(
            control_plane.inference_url + "/v1/chat/completions",
            json={
                "model": pool["name"],
                "messages": [{"role": "user", "content": "Say hi"}],
                "max_tokens": 4,
            },
            timeout=60,
        )
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"]
        cached = list((tmp_path / "cache").glob("*/SmolLM2-135M-Instruct.Q4_1.gguf"))
        assert len(cached) == 1
    finally:
        agent.stop()


def test_a_model_that_cannot_be_fetched_is_reported_as_an_issue(
    localstack: LocalStack, control_plane: ControlPlane, tmp_path: Path
) -> None:
    url = f"s3://{localstack.seeded['bucket']}/models/absent.gguf"
    agent = start_agent(control_plane, localstack, tmp_path, "broken", url)

    def reported() -> dict[str, Any] | None:
        view = control_plane.agent("broken")
        return view if view is not None and view["state"] == "error" else None

    try:
        wait_for(agent, lambda: reported() is not None, timeout=60, what="an error")
        view = reported()
        assert view is not None
        [issue] = view["issues"]
        assert "model could not be fetched" in issue and "no such key" in issue
        assert agent.running, "the agent stays connected to report the issue"
    finally:
        agent.stop()
