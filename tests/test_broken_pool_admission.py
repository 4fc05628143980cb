"""A pool whose every agent is in ``error`` (its model failed to fetch or load) refuses requests
at once with 503 ``capacity_unavailable`` naming the agents' issues, instead of buffering them
until ``buffer_timeout`` ends them with a 504."""

from __future__ import annotations

from pathlib import Path

import httpx

from control_plane.serving.pool_health import all_agents_broken
from tests.processes import ADMIN_HEADERS, ControlPlane, wait_until
from tests.serving_fixtures import StartAgent
from tests.test_model_swap import fail_the_only_agents_swap
from tests.test_scheduler import make_agent


def test_a_pool_is_broken_only_when_every_agent_is_in_error() -> None:
    first, second = make_agent("a"), make_agent("b", ready=False)
    first.reported_state, first.issues = "error", ("model failed to load: bad magic",)
    assert all_agents_broken([]) is None, "no agent yet: one may join"
    assert all_agents_broken([first, second]) is None, "b is still loading"
    second.reported_state = "error"
    reason = all_agents_broken([second, first])
    assert reason == (
        "every agent of this model is in error "
        "(agent a: model failed to load: bad magic; agent b: in error)"
    )


def test_a_draining_or_ready_agent_keeps_the_pool_open() -> None:
    broken, draining = make_agent("a"), make_agent("b")
    broken.reported_state = "error"
    draining.hold("rollout")
    assert all_agents_broken([broken, draining]) is None


def test_requests_to_a_pool_whose_only_agent_failed_its_swap_get_503_at_once(
    control_plane: ControlPlane, start_agent: StartAgent, tiny_model_path: Path, tmp_path: Path
) -> None:
    pool = tiny_model_path.stem
    url = f"{control_plane.management_url}/api/v1/pools/{pool}/desired-state"
    agent = fail_the_only_agents_swap(control_plane, start_agent, tiny_model_path, tmp_path)
    # the control plane waits 20 s (--buffer-timeout) before a 504: a 503 within 10 s is a refusal
    for path, body in [
        ("/v1/completions", {"model": pool, "prompt": "Hi", "max_tokens": 3}),
        ("/v1/chat/completions", {"model": pool, "messages": [{"role": "user", "content": "Hi"}]}),
    ]:
        answer = httpx.post(control_plane.inference_url + path, json=body, timeout=10)
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert error["code"] == "capacity_unavailable"
        assert "agent only: desired state v1 could not be applied" in error["message"]
        assert "model file not found" in error["message"]

    fixed = {"model_source": str(tiny_model_path), "slots": 1}
    assert httpx.put(url, headers=ADMIN_HEADERS, json=fixed).status_code == 200
    wait_until(lambda: agent()["state"] == "ready", timeout=60, what="the agent ready again")
    answer = httpx.post(
        control_plane.inference_url + "/v1/completions",
        json={"model": pool, "prompt": "Hi", "max_tokens": 3},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
