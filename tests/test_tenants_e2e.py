"""Tenants end to end: keys made through the management API, used through the openai SDK
against a real control plane and a real agent (the tiny GGUF model, one slot)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.processes import ADMIN_HEADERS, Agent, ControlPlane, wait_until

POOL = "tiny"


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path, "--buffer-timeout", "120", "--max-buffered-requests", "200")
    plane.start()
    yield plane
    plane.stop()


@pytest.fixture
def agent(plane: ControlPlane, tmp_path: Path, tiny_model_path: Path) -> Iterator[Agent]:
    yield from solo_agent(plane, tmp_path, tiny_model_path)


@pytest.fixture
def slow_agent(plane: ControlPlane, tmp_path: Path, smollm2_path: Path) -> Iterator[Agent]:
    """An agent slow enough (SmolLM2, one thread) for a queue to build up behind its slot."""
    yield from solo_agent(plane, tmp_path, smollm2_path)


def solo_agent(plane: ControlPlane, directory: Path, model: Path) -> Iterator[Agent]:
    agent = Agent(plane, directory, "solo", model, slots=1, pool=POOL)
    agent.start()
    plane.wait_for_ready_agent("solo")
    yield agent
    agent.stop()


def create_key(plane: ControlPlane, name: str, **fields: Any) -> str:
    response = httpx.post(
        plane.management_url + "/api/v1/keys", headers=ADMIN_HEADERS, json={"name": name, **fields}
    )
    assert response.status_code == 201, response.text
    secret: str = response.json()["secret"]
    return secret


def client(plane: ControlPlane, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=plane.inference_url + "/v1", api_key=secret, max_retries=0)


def ask(sdk: openai.OpenAI, text: str = "hi", max_tokens: int = 3) -> Any:
    return sdk.chat.completions.create(
        model=POOL, messages=[{"role": "user", "content": text}], max_tokens=max_tokens
    )


def test_a_spent_request_limit_raises_rate_limit_error_with_openai_headers(
    plane: ControlPlane, agent: Agent
) -> None:
    sdk = client(plane, create_key(plane, "team-a", requests_per_minute=2))
    first = sdk.chat.completions.with_raw_response.create(
        model=POOL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    ask(sdk)
    with pytest.raises(openai.RateLimitError) as raised:
        ask(sdk)
    error = raised.value
    assert error.code == "rate_limit_exceeded"
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert int(error.response.headers["retry-after"]) >= 1
    assert error.response.headers["x-ratelimit-reset-requests"].endswith("s")


def test_a_spent_budget_answers_insufficient_quota(plane: ControlPlane, agent: Agent) -> None:
    sdk = client(plane, create_key(plane, "thrifty", daily_token_budget=40))
    ask(sdk, "Tell me about the sea and the sky", max_tokens=8)

    def refused() -> bool:
        try:
            ask(sdk, max_tokens=1)
        except openai.RateLimitError as error:
            assert error.code == "insufficient_quota"
            return True
        return False

    wait_until(refused, timeout=10, what="the budget to be spent")


def test_a_revoked_key_stops_working(plane: ControlPlane, agent: Agent) -> None:
    sdk = client(plane, create_key(plane, "leaver"))
    ask(sdk)
    response = httpx.post(
        plane.management_url + "/api/v1/keys/leaver/revoke", headers=ADMIN_HEADERS
    )
    assert response.status_code == 200, response.text

    def rejected() -> bool:
        try:
            ask(sdk, max_tokens=1)
        except openai.AuthenticationError:
            return True
        return False

    wait_until(rejected, timeout=5, what="the revoked key to be refused")


def test_a_model_the_key_may_not_use_is_not_found(plane: ControlPlane, agent: Agent) -> None:
    sdk = client(plane, create_key(plane, "narrow", models=["another-model"]))
    with pytest.raises(openai.NotFoundError) as raised:
        ask(sdk)
    assert raised.value.code == "model_not_found"
    assert [model.id for model in sdk.models.list()] == []  # it lists only what the key may use
    allowed = client(plane, create_key(plane, "wide", models=[POOL]))
    assert [model.id for model in allowed.models.list()] == [POOL]


def test_no_key_is_refused_once_keys_exist(plane: ControlPlane, agent: Agent) -> None:
    create_key(plane, "someone")
    response = httpx.post(
        plane.inference_url + "/v1/chat/completions",
        json={"model": POOL, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


class Finishes:
    """The order in which requests sent from threads were answered."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def send(self, plane: ControlPlane, secret: str, label: str, max_tokens: int = 4) -> None:
        def run() -> None:
            response = httpx.post(
                plane.inference_url + "/v1/chat/completions",
                headers={"Authorization": f"Bearer {secret}"},
                json={
                    "model": POOL,
                    "messages": [{"role": "user", "content": "count"}],
                    "max_tokens": max_tokens,
                },
                timeout=300,
            )
            assert response.status_code == 200, response.text
            with self._lock:
                self.order.append(label)

        thread = threading.Thread(target=run)
        thread.start()
        self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(300)


def buffered(plane: ControlPlane) -> int:
    pools = {pool["name"]: pool for pool in plane.pools()}
    return int(pools[POOL]["requests_buffered"]) if POOL in pools else 0


def test_a_small_key_is_not_starved_behind_a_big_one(
    plane: ControlPlane, slow_agent: Agent
) -> None:
    big, small = create_key(plane, "batch-team"), create_key(plane, "chat-team")
    finishes = Finishes()
    for index in range(50):
        finishes.send(plane, big, f"A{index}", max_tokens=6)
    wait_until(lambda: buffered(plane) >= 40, timeout=60, what="the big key's jobs to queue")
    done_before = len(finishes.order)
    for index in range(5):
        finishes.send(plane, small, f"B{index}", max_tokens=6)
    finishes.join()
    after = finishes.order[done_before:]
    last_small = max(after.index(f"B{index}") for index in range(5))
    big_before_last_small = [label for label in after[:last_small] if label.startswith("A")]
    assert len(big_before_last_small) < 10, after


def test_a_high_priority_key_goes_before_waiting_normal_ones(
    plane: ControlPlane, slow_agent: Agent
) -> None:
    normal = create_key(plane, "normal-team")
    urgent = create_key(plane, "pager", priority="high")
    finishes = Finishes()
    for index in range(20):
        finishes.send(plane, normal, f"N{index}", max_tokens=6)
    wait_until(lambda: buffered(plane) >= 15, timeout=60, what="the normal jobs to queue")
    done_before = len(finishes.order)
    finishes.send(plane, urgent, "urgent", max_tokens=6)
    finishes.join()
    after = finishes.order[done_before:]
    assert after.index("urgent") <= 2, after  # at most the jobs already on the agent before it


def usage_totals(plane: ControlPlane, key: str) -> dict[str, int]:
    response = plane.management_get("/api/v1/usage", key=key)
    assert response.status_code == 200, response.text
    totals: dict[str, int] = response.json()["totals"]
    return totals


def test_usage_rows_add_up_to_the_responses_usage_and_survive_a_restart(
    plane: ControlPlane, agent: Agent
) -> None:
    sdk = client(plane, create_key(plane, "metered", tokens_per_minute=100_000))
    prompt = completion = 0
    for text in ("one", "two words", "three small words"):
        usage = ask(sdk, text, max_tokens=5).usage
        prompt += usage.prompt_tokens
        completion += usage.completion_tokens

    def settled() -> bool:
        totals = usage_totals(plane, "metered")
        return totals.get("requests") == 3

    wait_until(settled, timeout=10, what="usage to be flushed")
    totals = usage_totals(plane, "metered")
    assert (totals["prompt_tokens"], totals["completion_tokens"]) == (prompt, completion)

    plane.stop()
    plane.start()
    assert usage_totals(plane, "metered") == totals
    listed = plane.management_get("/api/v1/keys").json()["data"]
    assert [key["name"] for key in listed] == ["metered"]
    plane.wait_for_ready_agent("solo", timeout=30)
    assert ask(sdk).choices, "the key works again after the restart"
