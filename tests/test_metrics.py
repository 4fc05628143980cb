"""/metrics on a real control plane: it parses, and it moves when requests are served."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import ControlPlane, wait_until
from tests.serving_fixtures import StartAgent

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(plane: ControlPlane) -> Samples:
    response = plane.management_get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def chat(plane: ControlPlane, model: str, **headers: str) -> httpx.Response:
    return httpx.post(
        plane.inference_url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6},
        headers=headers,
        timeout=60,
    )


def test_metrics_move_when_requests_are_served(
    control_plane: ControlPlane, start_agent: StartAgent, smollm2_path: Path
) -> None:
    assert httpx.get(control_plane.management_url + "/metrics").status_code == 401
    start_agent("metered", slots=2)
    pool = smollm2_path.stem
    wait_until(
        lambda: (
            value(scrape(control_plane), "paddler_agent_kv_cells_total", pool=pool, agent="metered")
            > 0
        ),
        what="the agent's engine figures",
    )
    before = scrape(control_plane)
    assert value(before, "paddler_pool_slots_total", pool=pool) == 2
    assert value(before, "paddler_agents", pool=pool, state="ready") == 1
    assert value(before, "paddler_agents", pool=pool, state="loading") == 0

    answered = chat(control_plane, pool, **{"X-Request-Id": "client-id-1"})
    assert answered.status_code == 200
    assert answered.headers["X-Request-Id"] == "client-id-1"
    second = chat(control_plane, pool)
    assert len(second.headers["X-Request-Id"]) == 32
    assert chat(control_plane, "no-such-model").status_code == 404

    after = scrape(control_plane)
    route = "/v1/chat/completions"
    ok = {"pool": pool, "route": route, "status": "200"}
    assert value(after, "paddler_requests_total", **ok) == 2
    assert value(after, "paddler_requests_total", pool="", route=route, status="404") == 1
    generated = sum(
        response.json()["usage"]["completion_tokens"] for response in (answered, second)
    )
    assert value(after, "paddler_generated_tokens_total", pool=pool) == generated
    for histogram in (
        "paddler_queue_wait_seconds",
        "paddler_time_to_first_token_seconds",
        "paddler_request_duration_seconds",
        "paddler_tokens_per_request",
    ):
        assert value(after, histogram + "_count", pool=pool) == 2, histogram
    assert value(after, "paddler_tokens_per_request_sum", pool=pool) == generated
    assert value(after, "paddler_job_events_total", pool=pool, event="finished") == 2
    assert value(after, "paddler_pool_slots_busy", pool=pool) == 0
    assert value(after, "paddler_pool_buffered_requests", pool=pool) == 0
