"""The official openai package works unchanged against Paddler, streaming included."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.processes import ControlPlane
from tests.serving_fixtures import StartAgent


@pytest.fixture
def client(control_plane: ControlPlane, start_agent: StartAgent) -> openai.OpenAI:
    start_agent("sdk", slots=2)
    return openai.OpenAI(base_url=control_plane.inference_url + "/v1", api_key="x", max_retries=0)


def test_models_list(client: openai.OpenAI, smollm2_path: Path) -> None:
    assert [model.id for model in client.models.list()] == [smollm2_path.stem]


def test_chat_completion(client: openai.OpenAI, smollm2_path: Path) -> None:
    completion = client.chat.completions.create(
        model=smollm2_path.stem,
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        max_tokens=24,
        temperature=0,
    )
    answer = completion.choices[0].message.content
    assert answer and "Paris" in answer
    assert completion.usage is not None and completion.usage.prompt_tokens > 10
    assert completion.choices[0].finish_reason in ("stop", "length")


def test_streaming_chat_matches_non_streaming(client: openai.OpenAI, smollm2_path: Path) -> None:
    model = smollm2_path.stem
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Name three colours."}
    ]
    whole = client.chat.completions.create(
        model=model, messages=messages, max_tokens=16, temperature=0
    )
    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert streamed == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None
    assert whole.usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_sdk_raises_typed_errors(client: openai.OpenAI, smollm2_path: Path) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model=smollm2_path.stem, messages=[{"role": "user", "content": "hi"}], n=2
        )
    assert bad.value.param == "n"


def test_stop_sequence_and_stop_finish(client: openai.OpenAI, smollm2_path: Path) -> None:
    completion = client.completions.create(
        model=smollm2_path.stem,
        prompt="1, 2, 3, 4,",
        max_tokens=20,
        temperature=0,
        stop=[" 7"],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert " 7" not in choice.text


def test_api_keys_are_enforced_for_the_sdk(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path, "--api-keys", "k-live")
    plane.start()
    try:
        base_url = plane.inference_url + "/v1"
        wrong = openai.OpenAI(base_url=base_url, api_key="k-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as refused:
            wrong.models.list()
        assert refused.value.code == "invalid_api_key"
        right = openai.OpenAI(base_url=base_url, api_key="k-live", max_retries=0)
        assert list(right.models.list()) == []
    finally:
        plane.stop()


def test_json_schema_response_format(client: openai.OpenAI, smollm2_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    completion = client.chat.completions.create(
        model=smollm2_path.stem,
        messages=[{"role": "user", "content": "Describe Paris as JSON."}],
        max_tokens=60,
        temperature=0,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "city", "schema": schema, "strict": True},
        },
    )
    content = completion.choices[0].message.content
    assert content is not None
    jsonschema.validate(json.loads(content), schema)


def test_a_repeated_conversation_reports_cached_prompt_tokens(
    client: openai.OpenAI, smollm2_path: Path
) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "You answer in one short sentence. " * 20},
        {"role": "user", "content": "What colour is the sky?"},
    ]
    first = client.chat.completions.create(
        model=smollm2_path.stem, messages=messages, max_tokens=8, temperature=0
    )
    messages.append({"role": "assistant", "content": first.choices[0].message.content or ""})
    messages.append({"role": "user", "content": "And the grass?"})
    second = client.chat.completions.create(
        model=smollm2_path.stem, messages=messages, max_tokens=8, temperature=0
    )
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached is not None and cached > 100
    assert cached < second.usage.prompt_tokens


def test_an_unknown_logit_bias_token_is_a_bad_request(
    client: openai.OpenAI, smollm2_path: Path
) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model=smollm2_path.stem,
            messages=[{"role": "user", "content": "hi"}],
            logit_bias={"9999999": 5},
        )
    assert bad.value.code == "invalid_logit_bias"
    assert bad.value.param == "logit_bias"
