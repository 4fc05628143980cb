"""The hot inference routes served straight on ASGI (control_plane/inference/direct_routes.py):
what a client sees is what Quart's hooks and handlers gave it. Through a real server where the
server matters (headers, bodies, disconnects), in-process where a fault must be planted."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from control_plane.app import create_inference_app
from control_plane.inference import direct_routes
from control_plane.state import ControlPlane as InProcessPlane
from paddler import protocol
from tests.in_process_app import CHAT, chat_stream, job_sent_to
from tests.processes import ControlPlane, wait_until
from tests.serving_fixtures import StartAgent
from tests.test_errors import assert_openai_error
from tests.test_metrics import scrape, value
from tests.test_scheduler import done, make_agent, sent
from tests.test_serving import sse_events
from tests.test_tenants_e2e import create_key

ORIGIN = "https://app.example"
LIMIT = 4096
CHAT_PATH = "/v1/chat/completions"
INVALID_JSON = b"{not json"
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
QUEUED = re.compile(r": queued position=1 waited=\d+s")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ControlPlane]:
    """A control plane process that lets ``ORIGIN`` in and takes bodies up to ``LIMIT``."""
    server = ControlPlane(
        tmp_path, "--cors-origins", ORIGIN, "--max-request-bytes", str(LIMIT), "--log-level", "info"
    )
    server.start()
    yield server
    server.stop()


def post(server: ControlPlane, path: str, content: Any, **headers: str) -> httpx.Response:
    return httpx.post(server.inference_url + path, content=content, headers=headers, timeout=30)


def openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    return assert_openai_error(response.json())


# -- through a real server ---------------------------------------------------------------------


def test_request_ids_are_echoed_or_made_on_errors(server: ControlPlane) -> None:
    for path in (CHAT_PATH, "/v1/completions"):
        given = post(server, path, INVALID_JSON, **{"X-Request-Id": "trace-7"})
        assert given.headers["X-Request-Id"] == "trace-7"
        assert openai_error(given, 400)["type"] == "invalid_request_error"
        made = post(server, path, INVALID_JSON)
        assert GENERATED_ID.fullmatch(made.headers["X-Request-Id"])
        insane = post(server, path, INVALID_JSON, **{"X-Request-Id": "no spaces, please"})
        assert GENERATED_ID.fullmatch(insane.headers["X-Request-Id"])


def test_a_key_is_needed_once_keys_exist(server: ControlPlane) -> None:
    secret = create_key(server, "team")
    refused = post(server, CHAT_PATH, json.dumps(CHAT), **{"X-Request-Id": "keyless"})
    assert openai_error(refused, 401)["code"] == "invalid_api_key"
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert refused.headers["X-Request-Id"] == "keyless"
    wrong = post(server, CHAT_PATH, json.dumps(CHAT), Authorization="Bearer sk-wrong")
    assert openai_error(wrong, 401)["code"] == "invalid_api_key"
    let_in = post(server, CHAT_PATH, INVALID_JSON, Authorization=f"Bearer {secret}")
    assert openai_error(let_in, 400)  # past the key check, the body is read


def test_a_body_over_the_limit_is_refused_declared_or_not(server: ControlPlane) -> None:
    large = b" " * (LIMIT + 1)
    declared = post(server, CHAT_PATH, large)
    assert openai_error(declared, 413)["code"] == "payload_too_large"
    assert str(LIMIT) in declared.json()["error"]["message"]
    assert "X-Request-Id" in declared.headers

    def chunked() -> Iterator[bytes]:  # no Content-Length: the bytes read count
        yield large[:LIMIT]
        yield large[LIMIT:]

    read = post(server, "/v1/completions", chunked())
    assert openai_error(read, 413)["code"] == "payload_too_large"
    at_the_limit = post(server, CHAT_PATH, b" " * LIMIT)
    assert openai_error(at_the_limit, 400)


def test_other_methods_and_preflights_still_go_to_quart(server: ControlPlane) -> None:
    for path in (CHAT_PATH, "/v1/completions"):
        response = httpx.get(server.inference_url + path, headers={"X-Request-Id": "got"})
        assert openai_error(response, 405)["code"] == "method_not_allowed"
        assert "POST" in response.headers["Allow"]
        assert response.headers["X-Request-Id"] == "got"
        preflight = httpx.options(
            server.inference_url + path,
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 204
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert httpx.get(server.inference_url + "/health").json() == {"status": "ok"}


def test_an_allowed_origin_gets_cors_headers_on_a_post(server: ControlPlane) -> None:
    allowed = post(server, CHAT_PATH, INVALID_JSON, Origin=ORIGIN)
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert allowed.headers["Access-Control-Expose-Headers"] == "X-Request-Id"
    assert allowed.headers["Vary"] == "Origin"
    foreign = post(server, CHAT_PATH, INVALID_JSON, Origin="https://evil.example")
    assert not any(name.lower().startswith("access-control-") for name in foreign.headers)


def test_the_dashboards_own_origin_gets_cors_headers_by_the_host_it_was_reached_at(
    server: ControlPlane,
) -> None:
    """The playground's page, at the management port of whatever name the browser used."""
    port = server.management_port
    host = f"localhost:{server.inference_port}"
    by_name = post(server, CHAT_PATH, INVALID_JSON, Origin=f"http://localhost:{port}", Host=host)
    assert by_name.headers["Access-Control-Allow-Origin"] == f"http://localhost:{port}"
    wrong_port = post(server, CHAT_PATH, INVALID_JSON, Origin="http://localhost:1", Host=host)
    assert "Access-Control-Allow-Origin" not in wrong_port.headers
    no_origin = post(server, CHAT_PATH, INVALID_JSON, Host=host)
    assert "Access-Control-Allow-Origin" not in no_origin.headers


def test_requests_are_counted_by_route_and_status(server: ControlPlane) -> None:
    post(server, CHAT_PATH, INVALID_JSON)
    post(server, "/v1/completions", b" " * (LIMIT + 1))
    samples = scrape(server)
    counted = "paddler_requests_total"
    assert value(samples, counted, pool="", route=CHAT_PATH, status="400") == 1
    assert value(samples, counted, pool="", route="/v1/completions", status="413") == 1


@pytest.fixture
def agentless_pool(
    control_plane: ControlPlane, start_agent: StartAgent, tiny_model_path: Path
) -> str:
    """A pool whose only agent left: its requests wait in the queue."""
    start_agent("gone", model=tiny_model_path).stop()
    return tiny_model_path.stem


def withdrawn_for_leaving(control_plane: ControlPlane, pool: str) -> float:
    event = "withdrawn_client_disconnected"
    return value(scrape(control_plane), "paddler_job_events_total", pool=pool, event=event)


def test_a_client_that_leaves_a_stream_has_its_job_withdrawn(
    control_plane: ControlPlane, agentless_pool: str
) -> None:
    body = {"model": agentless_pool, "prompt": "hi", "max_tokens": 2, "stream": True}
    url = control_plane.inference_url + "/v1/completions"
    with httpx.stream("POST", url, json=body, timeout=30) as response:
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-cache"
        assert next(sse_events(response)) == ": queued position=1"
    wait_until_withdrawn(control_plane, agentless_pool)


def test_a_waiting_stream_hears_its_place_until_it_is_served_whole(
    control_plane: ControlPlane,
    agentless_pool: str,
    start_agent: StartAgent,
    tiny_model_path: Path,
) -> None:
    body = {"model": agentless_pool, "prompt": "hi", "max_tokens": 3, "stream": True}
    url = control_plane.inference_url + "/v1/completions"
    with httpx.stream("POST", url, json=body, timeout=30) as response:
        events = sse_events(response)
        assert next(events) == ": queued position=1"
        reports = [next(events), next(events)]  # written by the timer every 0.5 s
        start_agent("back", model=tiny_model_path)
        rest = list(events)
    still_waiting = list(itertools.takewhile(is_comment, rest))
    for report in reports + still_waiting:
        assert isinstance(report, str) and QUEUED.fullmatch(report), report
    data = rest[len(still_waiting) :]
    assert data[-1] == "[DONE]"
    chunks = [event for event in data[:-1] if isinstance(event, dict)]
    assert len(chunks) == len(data) - 1  # no comment among the answer's events
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_a_waiting_response_stream_hears_its_place_as_completions_do(
    control_plane: ControlPlane, agentless_pool: str
) -> None:
    """The Responses API goes through Quart, not the direct routes, and words it alike."""
    body = {"model": agentless_pool, "input": "hi", "max_output_tokens": 3, "stream": True}
    url = control_plane.inference_url + "/v1/responses"
    with httpx.stream("POST", url, json=body, timeout=30) as response:
        comments = (event for event in sse_events(response) if is_comment(event))
        assert next(comments) == ": queued position=1 waited=0s"
        assert QUEUED.fullmatch(str(next(comments)))
    wait_until_withdrawn(control_plane, agentless_pool)


def is_comment(event: dict[str, Any] | str) -> bool:
    return isinstance(event, str) and event.startswith(":")


def test_a_client_that_leaves_before_its_answer_has_its_job_withdrawn(
    control_plane: ControlPlane, agentless_pool: str
) -> None:
    body = {"model": agentless_pool, "prompt": "hi", "max_tokens": 2}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            control_plane.inference_url + "/v1/completions",
            json=body,
            timeout=httpx.Timeout(30, read=1.0),
        )
    wait_until_withdrawn(control_plane, agentless_pool)


def wait_until_withdrawn(control_plane: ControlPlane, pool: str) -> None:
    wait_until(lambda: withdrawn_for_leaving(control_plane, pool) == 1, what="job withdrawn")
    assert control_plane.pools()[0]["requests_buffered"] == 0


# -- in-process ------------------------------------------------------------------------------


async def test_an_unexpected_exception_is_a_500_without_its_details(
    inference_plane: InProcessPlane,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def crash(body: bytes) -> Any:
        raise RuntimeError("password=hunter2")

    monkeypatch.setitem(direct_routes.PARSERS, CHAT_PATH, crash)
    client = create_inference_app(inference_plane).test_client()
    with caplog.at_level(logging.ERROR):
        response = await client.post(CHAT_PATH, json=CHAT, headers={"X-Request-Id": "crash-1"})
    assert response.status_code == 500
    error = assert_openai_error(await response.get_json())
    assert error["type"] == "server_error"
    assert "hunter2" not in await response.get_data(as_text=True)
    assert response.headers["X-Request-Id"] == "crash-1"
    [record] = [r for r in caplog.records if r.getMessage().startswith("Unhandled exception")]
    assert record.exc_info is not None and "hunter2" in str(record.exc_info[1])


async def test_a_whole_answer_comes_as_json_with_the_request_id(
    inference_plane: InProcessPlane,
) -> None:
    agent = make_agent("a")
    inference_plane.scheduler.agent_joined(agent)
    client = create_inference_app(inference_plane).test_client()
    body = {**CHAT, "stream": False}
    answer = asyncio.ensure_future(
        client.post(CHAT_PATH, json=body, headers={"X-Request-Id": "whole"})
    )
    job_id = await job_sent_to(agent)
    inference_plane.scheduler.agent_message(agent, protocol.Token(job_id=job_id, text="Hi"))
    inference_plane.scheduler.agent_message(agent, done(job_id))
    response = await answer
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Request-Id"] == "whole"
    completion = await response.get_json()
    assert completion["choices"][0]["message"]["content"] == "Hi"
    assert not await _watchers()


async def test_leaving_before_the_whole_answer_cancels_the_job(
    inference_plane: InProcessPlane,
) -> None:
    agent = make_agent("a")
    inference_plane.scheduler.agent_joined(agent)
    app = create_inference_app(inference_plane)
    async with app.test_client().request(CHAT_PATH, method="POST") as connection:
        await connection.send(json.dumps({**CHAT, "stream": False}).encode())
        await connection.send_complete()
        job_id = await job_sent_to(agent)
        await connection.disconnect()
    assert protocol.Cancel(job_id=job_id) in sent(agent)
    assert inference_plane.scheduler.counters["withdrawn_client_disconnected"] == 1
    assert not await _watchers()


async def test_a_finished_stream_leaves_no_watcher_behind(
    inference_plane: InProcessPlane,
) -> None:
    async with chat_stream(inference_plane) as (agent, connection, job_id):
        inference_plane.scheduler.agent_message(agent, done(job_id))
        while b"[DONE]" not in await connection.receive():
            pass
    assert inference_plane.scheduler.counters["withdrawn_client_disconnected"] == 0
    assert not await _watchers()


async def _watchers() -> list[asyncio.Task[Any]]:
    """Disconnect watchers still running (a cancelled one is gone after one loop turn)."""
    await asyncio.sleep(0)
    return [
        task
        for task in asyncio.all_tasks()
        if "_cancel_when_client_leaves" in repr(task.get_coro()) and not task.done()
    ]
