"""Pools and their desired state over the management API: auth, validation, round trip, delete."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart

from control_plane.inference.chat_requests import parse_chat_completion
from control_plane.serving.desired_state import InferenceDefaults, apply_defaults
from control_plane.serving.jobs import InferenceJob
from control_plane.state import ControlPlane
from paddler.protocol import GenerationRequest
from tests.management_app import BEARER, TOKEN
from tests.test_management_access import _log_in as log_in

SPEC: dict[str, Any] = {"model_source": "/models/tiny.gguf", "slots": 2}


async def _error(response: Any, status: int) -> dict[str, Any]:
    body = await response.get_json()
    assert response.status_code == status, body
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/pools"),
        ("GET", "/api/v1/pools/tiny"),
        ("PUT", "/api/v1/pools/tiny/desired-state"),
        ("DELETE", "/api/v1/pools/tiny"),
    ],
)
async def test_pool_routes_need_the_admin_token(app: Quart, method: str, path: str) -> None:
    client = app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await client.open(path, method=method, headers=headers, json=SPEC)
        assert (await _error(response, 401))["code"] == "admin_token_required"


async def test_create_read_change_and_delete_a_pool(app: Quart) -> None:
    client = app.test_client()
    created = await client.post("/api/v1/pools", headers=BEARER, json={"name": "tiny", **SPEC})
    assert created.status_code == 201, await created.get_data()
    body = await created.get_json()
    assert body["desired"]["version"] == 1 and body["agents"] == []
    again = await client.post("/api/v1/pools", headers=BEARER, json={"name": "tiny", **SPEC})
    assert (await _error(again, 409))["code"] == "pool_exists"

    change = {
        "model_source": "https://models.example/other.gguf",
        "slots": 3,
        "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}",
        "context_size": 512,
        "inference_defaults": {"temperature": 0.2, "top_k": 40, "max_tokens": 64},
        "scaling": {"min_agents": 1, "max_agents": 3},
    }
    put = await client.put("/api/v1/pools/tiny/desired-state", headers=BEARER, json=change)
    assert put.status_code == 200, await put.get_data()
    read = await (await client.get("/api/v1/pools/tiny", headers=BEARER)).get_json()
    desired = read["desired"]
    assert desired["version"] == 2
    assert read["model_source"] == change["model_source"] and read["slots_per_agent"] == 3
    assert {key: desired[key] for key in change if key != "inference_defaults"} == {
        key: value for key, value in change.items() if key != "inference_defaults"
    }
    assert desired["inference_defaults"]["temperature"] == 0.2
    assert desired["inference_defaults"]["top_p"] is None
    listed = await (await client.get("/api/v1/pools", headers=BEARER)).get_json()
    assert [pool["name"] for pool in listed["data"]] == ["tiny"]

    assert (await client.delete("/api/v1/pools/tiny", headers=BEARER)).status_code == 204
    missing = await client.get("/api/v1/pools/tiny", headers=BEARER)
    assert (await _error(missing, 404))["code"] == "pool_not_found"
    put_missing = await client.put("/api/v1/pools/tiny/desired-state", headers=BEARER, json=SPEC)
    assert (await _error(put_missing, 404))["code"] == "pool_not_found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "bad name!", **SPEC}, "name"),
        ({"name": "p", "slots": 2}, "model_source"),
        ({"name": "p", **SPEC, "slots": 0}, "slots"),
        ({"name": "p", **SPEC, "context_size": 10}, "context_size"),
        (
            {"name": "p", **SPEC, "inference_defaults": {"temperature": 5}},
            "inference_defaults.temperature",
        ),
        ({"name": "p", **SPEC, "inference_defaults": {"hotness": 1}}, "inference_defaults.hotness"),
        ({"name": "p", **SPEC, "scaling": {"min_agents": 3, "max_agents": 1}}, "scaling"),
        ({"name": "p", **SPEC, "colour": "red"}, "colour"),
    ],
)
async def test_invalid_bodies_are_400s_naming_the_field(
    app: Quart, body: dict[str, Any], field: str
) -> None:
    response = await app.test_client().post("/api/v1/pools", headers=BEARER, json=body)
    error = await _error(response, 400)
    assert error["param"] == field, error
    assert field in error["message"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"chat_template": "{% for m in messages %}{{ m['content'] }"}, "chat_template"),
        ({"chat_template": "{{ messages[0]['content'] | nosuchfilter }}"}, "chat_template"),
        ({"chat_template": "{{ raise_exception('no user roles here') }}"}, "chat_template"),
        ({"model_source": "ftp://models.example/tiny.gguf"}, "model_source"),
    ],
)
async def test_unusable_templates_and_sources_are_422s(
    app: Quart, change: dict[str, Any], field: str
) -> None:
    client = app.test_client()
    await client.post("/api/v1/pools", headers=BEARER, json={"name": "tiny", **SPEC})
    response = await client.put(
        "/api/v1/pools/tiny/desired-state", headers=BEARER, json={**SPEC, **change}
    )
    error = await _error(response, 422)
    assert error["param"] == field and field in error["message"], error
    read = await (await client.get("/api/v1/pools/tiny", headers=BEARER)).get_json()
    assert read["desired"]["version"] == 1  # nothing was stored


async def test_a_pool_with_buffered_requests_cannot_be_deleted(
    app: Quart, plane: ControlPlane
) -> None:
    client = app.test_client()
    await client.post("/api/v1/pools", headers=BEARER, json={"name": "tiny", **SPEC})
    job = InferenceJob(pool="tiny", request=GenerationRequest(kind="completion", prompt="Hi"))
    plane.scheduler.submit(job)  # no agent: it waits in the buffer
    refused = await client.delete("/api/v1/pools/tiny", headers=BEARER)
    error = await _error(refused, 409)
    assert error["code"] == "pool_has_buffered_requests"
    assert "1 buffered request" in error["message"]
    plane.scheduler.withdraw(job, "test_over")
    assert (await client.delete("/api/v1/pools/tiny", headers=BEARER)).status_code == 204


def test_inference_defaults_fill_only_what_the_request_left_out() -> None:
    call = parse_chat_completion(
        '{"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0.9}'
    )
    defaults = InferenceDefaults(temperature=0.1, top_k=40, repeat_penalty=1.3, max_tokens=7)
    sampling = apply_defaults(call.request, defaults).sampling
    assert sampling.temperature == 0.9  # the request's own value wins
    assert (sampling.top_k, sampling.repeat_penalty, sampling.max_tokens) == (40, 1.3, 7)
    assert sampling.top_p == 1.0  # neither set it: the engine's default
    untouched = apply_defaults(call.request, InferenceDefaults())
    assert untouched is call.request


async def test_openapi_documents_the_pool_routes(app: Quart) -> None:
    document = await (await app.test_client().get("/openapi.json", headers=BEARER)).get_json()
    assert "put" in document["paths"]["/api/v1/pools/{name}/desired-state"]
    assert {"get", "delete"} <= set(document["paths"]["/api/v1/pools/{name}"])
    assert "post" in document["paths"]["/api/v1/pools"]


def _form_csrf(html: str) -> str:
    return html.split('name="csrf_token" value="')[1].split('"')[0]


async def test_the_pool_page_form_changes_the_desired_state(app: Quart) -> None:
    client = app.test_client()
    await client.post("/api/v1/pools", headers=BEARER, json={"name": "tiny", **SPEC})
    assert await log_in(client, TOKEN) == 302
    overview = await (await client.get("/")).get_data(as_text=True)
    assert 'href="/pools/tiny"' in overview
    page = await (await client.get("/pools/tiny")).get_data(as_text=True)
    assert 'value="/models/tiny.gguf"' in page
    csrf = _form_csrf(page)
    form = {"csrf_token": csrf, "model_source": "/models/other.gguf", "slots": "3"}

    forged = await client.post("/pools/tiny", form={**form, "csrf_token": "forged"})
    assert forged.status_code == 403
    bad_slots = await client.post("/pools/tiny", form={**form, "slots": "0"})
    assert bad_slots.status_code == 400
    assert 'data-error-for="slots"' in await bad_slots.get_data(as_text=True)
    bad_default = await client.post("/pools/tiny", form={**form, "inference_defaults.top_p": "7"})
    assert 'data-error-for="inference_defaults.top_p"' in await bad_default.get_data(as_text=True)
    bad_template = await client.post("/pools/tiny", form={**form, "chat_template": "{{ x"})
    assert bad_template.status_code == 422
    html = await bad_template.get_data(as_text=True)
    assert 'data-error-for="chat_template"' in html and "{{ x</textarea>" in html

    saved = await client.post(
        "/pools/tiny",
        form={**form, "inference_defaults.temperature": "0.3", "scaling.max_agents": "2"},
    )
    assert saved.status_code == 303 and saved.headers["Location"] == "/pools/tiny?saved=2"
    read = await (await client.get("/api/v1/pools/tiny", headers=BEARER)).get_json()
    desired = read["desired"]
    assert (desired["model_source"], desired["slots"], desired["chat_template"]) == (
        "/models/other.gguf",
        3,
        None,
    )
    assert desired["inference_defaults"]["temperature"] == 0.3
    assert desired["scaling"] == {"min_agents": None, "max_agents": 2}
