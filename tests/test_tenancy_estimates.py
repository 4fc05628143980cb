"""Token estimates made before any tokenizer has seen a request, and new key secrets."""

from __future__ import annotations

import hashlib

import pytest

from control_plane.tenancy.estimates import (
    DEFAULT_ANSWER_ALLOWANCE,
    estimate_prompt_tokens,
    estimated_cost,
)
from control_plane.tenancy.secrets import new_secret, secret_digest, visible_prefix
from paddler import protocol


def chat(*contents: str, max_tokens: int | None = None) -> protocol.GenerationRequest:
    return protocol.GenerationRequest(
        kind="chat",
        messages=tuple(protocol.ChatMessage(role="user", content=text) for text in contents),
        sampling=protocol.SamplingParams(max_tokens=max_tokens),
    )


def completion(prompt: str, max_tokens: int | None = None) -> protocol.GenerationRequest:
    return protocol.GenerationRequest(
        kind="completion", prompt=prompt, sampling=protocol.SamplingParams(max_tokens=max_tokens)
    )


TOOL = protocol.FunctionTool(name="weather", description="Today's weather", parameters={})
CALL = protocol.ToolCall(id="c1", name="weather", arguments='{"city": "Oslo"}')


@pytest.mark.parametrize(
    ("request_", "prompt_tokens"),
    [
        (chat("x" * 40), 10),
        (chat("x" * 41), 11),  # a part of a token is a token
        (chat("x" * 20, "y" * 20), 10),
        (chat(""), 1),  # never nothing
        (completion("x" * 400), 100),
        (protocol.EmbeddingRequest(inputs=("x" * 8, "y" * 12)), 5),
        (
            protocol.GenerationRequest(
                kind="chat",
                messages=(
                    protocol.ChatMessage(role="assistant", tool_calls=(CALL,)),
                    protocol.ChatMessage(role="tool", content="sunny", tool_call_id="c1"),
                ),
                tools=(TOOL,),
            ),
            # call: 7 + 16, answer: 5, tool: 7 + 15 + len("{}")
            -(-(7 + 16 + 5 + 7 + 15 + 2) // 4),
        ),
    ],
)
def test_prompt_estimate_is_a_token_per_four_characters(
    request_: protocol.GenerationRequest | protocol.EmbeddingRequest, prompt_tokens: int
) -> None:
    assert estimate_prompt_tokens(request_) == prompt_tokens


@pytest.mark.parametrize(
    ("request_", "cost"),
    [
        (chat("x" * 40, max_tokens=30), 40),
        (chat("x" * 40), 10 + DEFAULT_ANSWER_ALLOWANCE),
        (completion("x" * 8, max_tokens=0), 2),
        (protocol.EmbeddingRequest(inputs=("x" * 40,)), 10),  # embeddings answer no tokens
    ],
)
def test_cost_adds_the_most_the_answer_may_take(
    request_: protocol.GenerationRequest | protocol.EmbeddingRequest, cost: int
) -> None:
    assert estimated_cost(request_) == cost


def test_new_secrets_are_long_random_and_marked() -> None:
    secrets = {new_secret() for _ in range(100)}
    assert len(secrets) == 100
    for secret in secrets:
        assert secret.startswith("sk-pfp-")
        assert len(secret) == 47  # the mark and 40 URL-safe characters
        assert visible_prefix(secret) == secret[:12]


def test_digest_is_hex_sha256() -> None:
    assert secret_digest("sk-pfp-abc") == hashlib.sha256(b"sk-pfp-abc").hexdigest()
