"""Chat templates are code: every render is bounded in time and size, and the control plane
tries an admin's template in a child process, so its other requests go on meanwhile."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from quart import Quart

from paddler.chat_template import CHATML_TEMPLATE, ChatTemplate, RenderTooCostly
from paddler.protocol import ChatMessage
from paddler.template_probe import probe_template
from tests.management_app import BEARER

HELLO = (ChatMessage(role="user", content="Hello"),)
NESTED_LOOPS = (
    "{% set xs = range(100000)|list %}{% for i in xs %}{% for j in xs %}{% endfor %}{% endfor %}"
)
SPEC: dict[str, Any] = {"model_source": "/models/tiny.gguf", "slots": 2}


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 10**9 }}",
        "{{ 'x' * 1000000000 }}",
        "{{ [1] * 1000000000 }}",
        "{{ 7 ** 100000 }}",
        "{{ 'x'|center(1000000000) }}",
        "{{ 'x'.ljust(1000000000) }}",
        "{{ '%1000000000s' % 'x' }}",
        "{{ range(100000)|batch(1000000000, 'x')|list }}",
        "{% set ns = namespace(s='x') %}"
        "{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set ns = namespace(s='x') %}"
        "{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "{% for i in range(100000) %}{{ 'abcdefghij' * 1000 }}{% endfor %}",
    ],
)
def test_a_render_that_would_outgrow_its_budget_is_refused(source: str) -> None:
    with pytest.raises(RenderTooCostly):
        ChatTemplate(source).render(HELLO)


def test_a_render_past_its_time_is_stopped() -> None:
    with pytest.raises(RenderTooCostly, match="longer than"):
        ChatTemplate(NESTED_LOOPS).render(HELLO, seconds=0.2)


def test_bounds_leave_ordinary_templates_alone() -> None:
    long_message = ChatMessage(role="user", content="word " * 300_000)  # past the allowance
    prompt = ChatTemplate(CHATML_TEMPLATE).render((long_message,))
    assert prompt.startswith("<|im_start|>user\nword word") and len(prompt) > 1_500_000
    joined = ChatTemplate(
        "{% for m in messages %}{{ m['role'] ~ ': ' ~ m['content'] * 2 }}{% endfor %}"
    ).render(HELLO)
    assert joined == "user: HelloHello"


async def test_the_probe_renders_in_a_child_and_reports_the_failure() -> None:
    assert await probe_template(CHATML_TEMPLATE, HELLO) == len(ChatTemplate.chatml().render(HELLO))
    with pytest.raises(RenderTooCostly, match="longer than"):
        await probe_template(NESTED_LOOPS, HELLO, seconds=0.5)


@pytest.mark.parametrize("template", ["{{ 'x' * 10**9 }}", NESTED_LOOPS])
async def test_a_costly_template_is_a_422_and_the_control_plane_answers_meanwhile(
    app: Quart, template: str
) -> None:
    client = app.test_client()
    created = await client.post("/api/v1/pools", headers=BEARER, json={"name": "tiny", **SPEC})
    assert created.status_code == 201
    change = asyncio.create_task(
        client.put(
            "/api/v1/pools/tiny/desired-state",
            headers=BEARER,
            json={**SPEC, "chat_template": template},
        )
    )
    await asyncio.sleep(0)  # the change has started checking the template
    health = await client.get("/health")
    assert health.status_code == 200
    if template == NESTED_LOOPS:
        assert not change.done()  # /health answered while the template was still rendering
    response = await change
    body = await response.get_json()
    assert response.status_code == 422, body
    assert body["error"]["param"] == "chat_template"
    read = await (await client.get("/api/v1/pools/tiny", headers=BEARER)).get_json()
    assert read["desired"]["version"] == 1  # nothing was stored
