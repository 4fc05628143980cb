"""Whatever a client sends, the inference API answers with an OpenAI-shaped error, never a 500.

Runs the real Quart app and control-plane state (SQLite, scheduler) in-process. The pool exists
but has no agents, so a body that passes validation waits in the buffer and times out (504).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from quart import Quart

from control_plane.app import create_inference_app
from control_plane.settings import ControlPlaneSettings
from control_plane.state import ControlPlane

MODEL = "fuzz-model"
ALLOWED_STATUSES = {400, 404, 413, 504}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
chat_fields = st.fixed_dictionaries(
    {"model": st.sampled_from([MODEL, "unknown", 7, None])},
    optional={
        "messages": st.one_of(
            json_values,
            st.lists(
                st.fixed_dictionaries(
                    {"role": st.sampled_from(["user", "system", "robot", 1])},
                    optional={"content": json_values},
                ),
                max_size=3,
            ),
        ),
        "max_tokens": json_values,
        "temperature": json_values,
        "top_p": json_values,
        "stop": json_values,
        "stream": json_values,
        "stream_options": json_values,
        "n": json_values,
        "seed": json_values,
        "response_format": json_values,
        "tools": json_values,
        "mystery": json_values,
    },
)
plausible_values: st.SearchStrategy[Any] = st.sampled_from(
    [0, 1, 2, -1, 0.5, 1.5, 3.0, 4096, 10**12, True, False, None, "", "x", [], {}, ["\n"]]
)
VALID_CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
mutated_chat = st.builds(
    lambda key, value: {**VALID_CHAT, key: value},
    st.sampled_from(
        [
            "max_tokens",
            "max_completion_tokens",
            "temperature",
            "top_p",
            "seed",
            "stop",
            "n",
            "presence_penalty",
            "frequency_penalty",
            "stream_options",
            "user",
            "logprobs",
        ]
    ),
    plausible_values | json_values,
)
embedding_fields = st.fixed_dictionaries(
    {"model": st.sampled_from([MODEL, "unknown", 7, None])},
    optional={
        "input": st.one_of(json_values, st.lists(st.text(max_size=8) | st.integers(), max_size=3)),
        "encoding_format": st.sampled_from(["float", "base64", "int8", 1, None]),
        "dimensions": json_values,
        "user": json_values,
        "mystery": json_values,
    },
)
completion_fields = st.fixed_dictionaries(
    {"model": st.just(MODEL)},
    optional={"prompt": json_values, "max_tokens": json_values, "echo": json_values},
)


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[Quart]:
    state = ControlPlane(
        ControlPlaneSettings(state_dir=tmp_path, buffer_timeout=0.01, max_request_bytes=4096)
    )
    await state.start()
    await state.ensure_pool(MODEL, "/models/fuzz.gguf", 1)
    yield create_inference_app(state)
    await state.stop()


def assert_openai_error(status: int, body: Any) -> None:
    assert status in ALLOWED_STATUSES, (status, body)
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]


# the property tests' settings: no per-example deadline (the app's first request is slow)
fuzzed = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@settings(fuzzed, max_examples=300)
@given(body=chat_fields | mutated_chat)
async def test_chat_completions_never_fail_with_500(app: Quart, body: dict[str, Any]) -> None:
    response = await app.test_client().post("/v1/chat/completions", json=body)
    event(f"status {response.status_code}")
    if response.status_code == 200:
        return  # only a stream that then reported buffer_timeout in its body can be 200
    assert_openai_error(response.status_code, await response.get_json())


@fuzzed
@given(body=completion_fields)
async def test_completions_never_fail_with_500(app: Quart, body: dict[str, Any]) -> None:
    response = await app.test_client().post("/v1/completions", json=body)
    event(f"status {response.status_code}")
    assert_openai_error(response.status_code, await response.get_json())


@fuzzed
@given(body=embedding_fields)
async def test_embeddings_never_fail_with_500(app: Quart, body: dict[str, Any]) -> None:
    response = await app.test_client().post("/v1/embeddings", json=body)
    event(f"status {response.status_code}")
    assert_openai_error(response.status_code, await response.get_json())


@fuzzed
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
async def test_arbitrary_bytes_get_a_400(app: Quart, raw: bytes) -> None:
    response = await app.test_client().post(
        "/v1/chat/completions", data=raw, headers={"Content-Type": "application/json"}
    )
    assert_openai_error(response.status_code, await response.get_json())


async def test_streamed_request_that_times_out_in_the_buffer_ends_with_an_error_event(
    app: Quart,
) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    response = await app.test_client().post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    events = [
        line.removeprefix("data: ")
        for line in (await response.get_data(as_text=True)).splitlines()
        if line.startswith("data: ")
    ]
    assert json.loads(events[0])["error"]["code"] == "buffer_timeout"
    assert events[-1] == "[DONE]"
