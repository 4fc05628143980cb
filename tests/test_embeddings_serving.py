"""``/v1/embeddings`` end to end: real control plane and agents, the official openai SDK."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.processes import Agent, ControlPlane, wait_until
from tests.serving_fixtures import StartAgent

TEXTS = ["Paddles move a canoe.", "The cat sat on the mat.", "Paddles move a canoe."]


def sdk(plane: ControlPlane) -> openai.OpenAI:
    return openai.OpenAI(base_url=plane.inference_url + "/v1", api_key="x", max_retries=0)


def buffered(plane: ControlPlane, pool: str) -> int:
    return sum(entry["requests_buffered"] for entry in plane.pools() if entry["name"] == pool)


def test_embedding_request_waits_for_an_embeddings_agent_then_the_sdk_works(
    control_plane: ControlPlane, start_agent: StartAgent, smollm2_path: Path
) -> None:
    model = smollm2_path.stem
    start_agent("plain")  # creates the pool; serves chat but not embeddings
    early: dict[str, Any] = {}

    def ask_early() -> None:
        early["response"] = httpx.post(
            control_plane.inference_url + "/v1/embeddings",
            json={"model": model, "input": "sent before any embeddings agent"},
            timeout=60,
        )

    asker = threading.Thread(target=ask_early)
    asker.start()
    wait_until(lambda: buffered(control_plane, model) == 1, what="the request to be buffered")
    start_agent("embedder", embeddings=True)
    asker.join(60)
    response = early["response"]
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == model
    [item] = body["data"]
    assert item["object"] == "embedding" and item["index"] == 0
    assert len(item["embedding"]) == 576
    assert math.fsum(value * value for value in item["embedding"]) == pytest.approx(1.0, abs=1e-5)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    [embedder] = [agent for agent in control_plane.agents() if agent["name"] == "embedder"]
    assert embedder["embeddings"] is True

    client = sdk(control_plane)
    default = client.embeddings.create(model=model, input=TEXTS)  # the SDK asks for base64
    as_floats = client.embeddings.create(model=model, input=TEXTS, encoding_format="float")
    assert [item.index for item in default.data] == [0, 1, 2]
    assert [item.embedding for item in default.data] == [item.embedding for item in as_floats.data]
    first, other, again = (item.embedding for item in as_floats.data)
    assert len(first) == 576 and first != other
    assert sum(a * b for a, b in zip(first, again, strict=True)) > 1 - 1e-4
    assert default.usage.prompt_tokens == as_floats.usage.prompt_tokens > 0

    one = client.embeddings.create(model=model, input="a single string")
    assert len(one.data) == 1

    chat = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0
    )
    assert chat.choices[0].message.content


def test_embedding_errors_are_openai_shaped(
    control_plane: ControlPlane, start_agent: StartAgent, smollm2_path: Path
) -> None:
    start_agent("embedder", embeddings=True)
    client = sdk(control_plane)
    model = smollm2_path.stem
    with pytest.raises(openai.BadRequestError) as too_long:
        client.embeddings.create(model=model, input=["short", "paddle " * 1500])
    assert too_long.value.code == "context_length_exceeded"
    assert "input[1]" in too_long.value.message
    with pytest.raises(openai.BadRequestError) as empty:
        client.embeddings.create(model=model, input=["fine", ""])
    assert empty.value.param == "input[1]"
    with pytest.raises(openai.BadRequestError) as tokens:
        client.embeddings.create(model=model, input=[[1, 2, 3]])
    assert tokens.value.code == "unsupported_value"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")


def test_pool_without_embeddings_agents_times_out_with_a_hint(
    tmp_path: Path, tiny_model_path: Path
) -> None:
    plane = ControlPlane(tmp_path, "--buffer-timeout", "1")
    plane.start()
    agent = Agent(plane, tmp_path, "plain", tiny_model_path)
    try:
        agent.start()
        plane.wait_for_ready_agent("plain")
        response = httpx.post(
            plane.inference_url + "/v1/embeddings",
            json={"model": tiny_model_path.stem, "input": "x"},
            timeout=30,
        )
        assert response.status_code == 504
        error = response.json()["error"]
        assert error["code"] == "buffer_timeout" and "--embeddings" in error["message"]
    finally:
        agent.stop()
        plane.stop()
