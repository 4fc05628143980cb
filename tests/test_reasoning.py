"""Reasoning: ``reasoning_format`` asked by a request or filled from the pool's defaults,
thoughts apart from the answer in chat objects and chunks, and reasoning tokens in the usage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from quart import Quart

from control_plane.errors import OpenAIError
from control_plane.inference.chat_chunks import ChatStream
from control_plane.inference.chat_objects import chat_completion
from control_plane.inference.chat_requests import parse_chat_completion
from control_plane.inference.generated_output import GeneratedOutput
from control_plane.inference.openai_objects import Header
from control_plane.serving.desired_state import InferenceDefaults, apply_defaults
from paddler.protocol import Done, Token, Usage
from tests.management_app import BEARER, TOKEN
from tests.processes import ControlPlane
from tests.template_agents import FIXTURES, client_of_agent
from tests.test_management_access import _log_in as log_in

HEADER = Header("chatcmpl-1", 1_700_000_000, "m")
USAGE = Usage(prompt_tokens=5, completion_tokens=9, reasoning_tokens=6)
DONE = Done(job_id="j", finish_reason="stop", usage=USAGE)
PIECES = [
    Token(job_id="j", reasoning="The capital"),
    Token(job_id="j", reasoning=" of France."),
    Token(job_id="j", text="Paris"),
]


def chat(**fields: Any) -> bytes:
    body = {"model": "m", "messages": [{"role": "user", "content": "Capital of France?"}]}
    return json.dumps({**body, **fields}).encode()


@pytest.mark.parametrize(
    ("given", "expected"), [("auto", "auto"), ("none", "none"), ("deepseek", "auto")]
)
def test_a_request_chooses_its_reasoning_format(given: str, expected: str) -> None:
    request = parse_chat_completion(chat(reasoning_format=given)).request

    assert request.reasoning_format == expected


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"reasoning_format": "deepseek-legacy"}, "reasoning_format", "invalid_value"),
        ({"reasoning_format": 1}, "reasoning_format", "invalid_value"),
        ({"reasoning_effort": "low"}, "reasoning_effort", "unsupported_parameter"),
    ],
)
def test_bad_reasoning_requests_are_rejected(fields: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(OpenAIError) as raised:
        parse_chat_completion(chat(**fields))

    assert (raised.value.status, raised.value.param, raised.value.code) == (400, param, code)


def test_the_pool_default_fills_only_a_request_that_left_it_out() -> None:
    defaults = InferenceDefaults(reasoning_format="none", temperature=0.2)
    left_out = parse_chat_completion(chat()).request
    chosen = parse_chat_completion(chat(reasoning_format="auto", temperature=1.0)).request

    filled = apply_defaults(left_out, defaults)
    kept = apply_defaults(chosen, defaults)

    assert (filled.reasoning_format, filled.sampling.temperature) == ("none", 0.2)
    assert (kept.reasoning_format, kept.sampling.temperature) == ("auto", 1.0)
    assert apply_defaults(left_out, InferenceDefaults()) is left_out
    assert apply_defaults(left_out, InferenceDefaults()).reasoning_format == "auto"


async def test_the_management_api_and_the_pool_page_set_the_pool_default(app: Quart) -> None:
    client = app.test_client()
    spec = {"model_source": "/models/tiny.gguf", "slots": 1}
    created = await client.post(
        "/api/v1/pools",
        headers=BEARER,
        json={"name": "tiny", **spec, "inference_defaults": {"reasoning_format": "none"}},
    )
    assert created.status_code == 201, await created.get_data()
    assert (await created.get_json())["desired"]["inference_defaults"]["reasoning_format"] == "none"
    bad = await client.put(
        "/api/v1/pools/tiny/desired-state",
        headers=BEARER,
        json={**spec, "inference_defaults": {"reasoning_format": "sometimes"}},
    )
    assert bad.status_code == 400
    assert "reasoning_format" in (await bad.get_data(as_text=True))

    assert await log_in(client, TOKEN) == 302
    page = await (await client.get("/pools/tiny")).get_data(as_text=True)
    assert '<select id="inference_defaults.reasoning_format"' in page  # a choice, not a number
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    form = {"csrf_token": csrf, "model_source": "/models/tiny.gguf", "slots": "1"}
    saved = await client.post(
        "/pools/tiny", form={**form, "inference_defaults.reasoning_format": "auto"}
    )
    assert saved.status_code == 303
    read = await (await client.get("/api/v1/pools/tiny", headers=BEARER)).get_json()
    assert read["desired"]["inference_defaults"]["reasoning_format"] == "auto"


def test_a_whole_answer_keeps_its_thoughts_apart() -> None:
    output = GeneratedOutput()
    for piece in PIECES:
        output.add(piece)

    completion = ChatCompletion.model_validate(chat_completion(HEADER, output, DONE))

    message = completion.choices[0].message
    assert message.content == "Paris"
    assert (message.model_extra or {})["reasoning_content"] == "The capital of France."
    assert completion.usage is not None and completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 6


def test_streamed_thoughts_come_as_reasoning_content_deltas() -> None:
    stream = ChatStream(HEADER, logprobs=False, include_usage=True)
    raw = [chunk for piece in PIECES for chunk in stream.piece(piece)] + stream.ending(DONE)
    chunks = [ChatCompletionChunk.model_validate(chunk) for chunk in raw]

    reasoning = "".join(
        (chunk.choices[0].delta.model_extra or {}).get("reasoning_content", "")
        for chunk in chunks
        if chunk.choices
    )
    content = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert (reasoning, content) == ("The capital of France.", "Paris")
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 6


# -- through real processes ------------------------------------------------------------------

THINKING_TEMPLATE = FIXTURES / "thinking_chatml.jinja"
# the output is forced, so that SmolLM2 (which does not think) writes a thought
THOUGHT_THEN_ANSWER = 'root ::= "<think>The capital of France.</think>Paris"'


@pytest.fixture
def thinking_client(
    control_plane: ControlPlane, tmp_path: Path, smollm2_path: Path
) -> Iterator[openai.OpenAI]:
    with client_of_agent(
        control_plane, tmp_path, smollm2_path, "thinker", THINKING_TEMPLATE
    ) as client:
        yield client


def thinking_request(model: str, **overrides: Any) -> Any:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 40,
        "temperature": 0,
        "extra_body": {"grammar": THOUGHT_THEN_ANSWER, **overrides},
    }


def test_a_thought_comes_apart_from_the_answer(
    thinking_client: openai.OpenAI, smollm2_path: Path
) -> None:
    model = smollm2_path.stem
    whole = thinking_client.chat.completions.create(**thinking_request(model))
    chunks = list(thinking_client.chat.completions.create(**thinking_request(model), stream=True))

    message = whole.choices[0].message
    assert message.content == "Paris"
    assert (message.model_extra or {}).get("reasoning_content") == "The capital of France."
    assert whole.usage is not None and whole.usage.completion_tokens_details is not None
    reasoning_tokens = whole.usage.completion_tokens_details.reasoning_tokens
    assert reasoning_tokens is not None and 0 < reasoning_tokens < whole.usage.completion_tokens
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    streamed_thought = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    assert streamed_thought == "The capital of France."
    assert "".join(delta.content or "" for delta in deltas) == "Paris"


def test_reasoning_format_none_keeps_the_thought_inline(
    thinking_client: openai.OpenAI, smollm2_path: Path
) -> None:
    completion = thinking_client.chat.completions.create(
        **thinking_request(smollm2_path.stem, reasoning_format="none")
    )

    message = completion.choices[0].message
    assert message.content == "<think>The capital of France.</think>Paris"
    assert "reasoning_content" not in (message.model_extra or {})
