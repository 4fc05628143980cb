"""Prefix-aware routing end to end: a control plane and two real SmolLM2 agents.

The next turn of a conversation goes to the agent that served the previous one, which
reuses its KV; when that agent is full the turn goes to the other at once; the agent's
report of what its slots hold stays bounded however many requests it serves.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.engine.engine import Engine
from paddler.prefix_hashes import MAX_LINKS
from paddler.protocol import ChatMessage, GenerationRequest, SamplingParams
from tests.engines import loaded_engine
from tests.processes import ADMIN_HEADERS, Agent, ControlPlane

ROUTED = re.compile(r"dispatched job (\w+) to agent (\S+) \(.*?slots busy\): (.+)")
HISTORY = " ".join(f"Fact {index}: the lighthouse keeper has {index} lamps." for index in range(25))


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    # agents report every agent_timeout / 3 seconds: 1s here, so reports arrive between turns
    plane = ControlPlane(tmp_path, "--agent-timeout", "3", "--buffer-timeout", "60")
    plane.start()
    yield plane
    plane.stop()


@pytest.fixture
def agents(plane: ControlPlane, tmp_path: Path, smollm2_path: Path) -> Iterator[list[Agent]]:
    started = [Agent(plane, tmp_path, name, smollm2_path, slots=1) for name in ("left", "right")]
    for agent in started:
        agent.start()
    for agent in started:
        plane.wait_for_ready_agent(agent.name)
    yield started
    for agent in started:
        agent.stop()


def routings(plane: ControlPlane) -> list[tuple[str, str]]:
    """(agent, reason) of every routing decision so far, in order."""
    return [(found[2], found[3]) for found in ROUTED.finditer(plane.log(tail=None))]


def turn(
    plane: ControlPlane, model: str, messages: list[dict[str, str]], max_tokens: int = 6
) -> dict[str, Any]:
    response = httpx.post(
        plane.inference_url + "/v1/chat/completions",
        json={"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    messages.append(answer["choices"][0]["message"])
    return answer


def opening(topic: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": f"You answer questions about {topic}. {HISTORY}"},
        {"role": "user", "content": f"Tell me about {topic}."},
    ]


def test_the_next_turn_goes_where_the_conversation_is_cached(
    plane: ControlPlane, agents: list[Agent], smollm2_path: Path
) -> None:
    model = smollm2_path.stem
    first, second = opening("ships"), opening("trains")
    turn(plane, model, first)
    turn(plane, model, second)
    (first_agent, reason), (second_agent, _) = routings(plane)
    assert reason == "least busy"
    assert {first_agent, second_agent} == {"left", "right"}  # idle longest, then the other
    for _ in range(2):
        for messages, holder in ((first, first_agent), (second, second_agent)):
            # the agents' reports (every second) have superseded what was sent
            threading.Event().wait(1.5)
            messages.append({"role": "user", "content": "And then?"})
            usage = turn(plane, model, messages)["usage"]
            agent, reason = routings(plane)[-1]
            assert agent == holder
            assert reason.startswith("prefix hit"), reason
            cached = usage["prompt_tokens_details"]["cached_tokens"]
            assert cached > 200 and cached < usage["prompt_tokens"]
    metrics = plane.management_get("/metrics").text
    assert re.search(
        r'paddler_routing_decisions_total\{pool="[^"]+",reason="prefix_hit"\} 4', metrics
    )
    assert _fleet_event(plane)["pools"][0]["routing"]["cached_ratio"] > 0.5


def test_when_the_holder_is_full_the_turn_goes_elsewhere_at_once(
    plane: ControlPlane, agents: list[Agent], smollm2_path: Path
) -> None:
    model = smollm2_path.stem
    messages = opening("rivers")
    turn(plane, model, messages)
    [(holder, _)] = routings(plane)
    other = ({"left", "right"} - {holder}).pop()
    busy_turn = [*messages, {"role": "user", "content": "Write a very long poem about it."}]
    body = {"model": model, "messages": busy_turn, "max_tokens": 400, "stream": True}
    with httpx.stream(
        "POST", plane.inference_url + "/v1/chat/completions", json=body, timeout=120
    ) as busy:
        lines = busy.iter_lines()
        next(line for line in lines if line.startswith("data: {"))  # the holder is generating
        agent, reason = routings(plane)[-1]
        assert agent == holder and reason.startswith("prefix hit")
        messages.append({"role": "user", "content": "Say yes."})
        turn(plane, model, messages, max_tokens=2)
        agent, reason = routings(plane)[-1]
        assert agent == other
        assert reason.startswith("holder full"), reason


def test_a_named_session_stays_on_its_agent_when_its_history_is_rewritten(
    plane: ControlPlane, agents: list[Agent], smollm2_path: Path
) -> None:
    model = smollm2_path.stem

    def ask(content: str, **session: Any) -> None:
        body = {"model": model, "messages": [{"role": "user", "content": content}]}
        response = httpx.post(
            plane.inference_url + "/v1/chat/completions",
            json={**body, "max_tokens": 2, **session.get("body", {})},
            headers=session.get("headers", {}),
            timeout=120,
        )
        assert response.status_code == 200, response.text

    ask("Hello there.", body={"user": "alice"})
    [(alices_agent, _)] = routings(plane)
    # least busy would now pick the other agent, idle for longer; the session keeps alice's
    ask("A summary of everything so far.", body={"user": "alice"})
    agent, reason = routings(plane)[-1]
    assert (agent, reason) == (alices_agent, "session (the agent that served its last turn)")
    ask("Hi from the other one.", headers={"X-Session-Id": "bob"})
    bobs_agent, _ = routings(plane)[-1]
    assert bobs_agent != alices_agent
    ask("Another start entirely.", headers={"X-Session-Id": "bob"})
    assert routings(plane)[-1] == (bobs_agent, "session (the agent that served its last turn)")


def test_an_agents_summary_stays_bounded_after_many_requests(smollm2_path: Path) -> None:
    with loaded_engine(smollm2_path, slots=2, context_size=2048) as engine:
        asyncio.run(_many_conversations(engine))
        report = engine.slot_prefixes()
    assert report is not None and len(report.slots) == 2
    assert all(0 < len(slot) <= MAX_LINKS for slot in report.slots)


async def _many_conversations(engine: Engine) -> None:
    """Pairs of long conversations at once, so that both slots serve some."""

    def request(index: int) -> GenerationRequest:
        messages = tuple(
            ChatMessage(role=("user", "assistant")[turn % 2], content=f"{index}.{turn}")
            for turn in range(70)
        )
        return GenerationRequest(
            kind="chat", messages=messages, sampling=SamplingParams(max_tokens=1)
        )

    for index in range(0, 6, 2):
        await asyncio.gather(
            *(
                engine.generate(request(number), lambda _: None, threading.Event())
                for number in (index, index + 1)
            )
        )


def _fleet_event(plane: ControlPlane) -> dict[str, Any]:
    with httpx.stream(
        "GET", plane.management_url + "/api/v1/events", headers=ADMIN_HEADERS, timeout=10
    ) as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                found: dict[str, Any] = json.loads(line.removeprefix("data: "))
                return found
    raise AssertionError("no fleet event")
