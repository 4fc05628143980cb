"""Log probabilities: what chat and completions requests may ask, the objects the answers carry,
and (through real processes with the openai SDK) that they are the model's own."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.chat_completion import ChoiceLogprobs

from control_plane.errors import OpenAIError
from control_plane.inference.chat_chunks import ChatStream
from control_plane.inference.chat_objects import chat_completion
from control_plane.inference.chat_requests import parse_chat_completion, parse_completion
from control_plane.inference.generated_output import GeneratedOutput
from control_plane.inference.openai_objects import Header
from control_plane.inference.text_objects import TextStream, text_completion
from paddler.protocol import Done, Token, TokenLogprob, TopLogprob, Usage
from tests.processes import ControlPlane
from tests.serving_fixtures import StartAgent

HEADER = Header("chatcmpl-1", 1_700_000_000, "m")
DONE = Done(job_id="j", finish_reason="length", usage=Usage(prompt_tokens=3, completion_tokens=2))
HEL = TokenLogprob(
    token="Hel",
    logprob=-0.1,
    bytes=(72, 101, 108),
    top_logprobs=(TopLogprob(token="Hel", logprob=-0.1), TopLogprob(token="Hi", logprob=-2.5)),
)
LO = TokenLogprob(token="lo", logprob=-0.3, bytes=(108, 111), top_logprobs=())
PIECES = [
    Token(job_id="j", text="Hel", logprobs=(HEL,)),
    Token(job_id="j", text="lo", logprobs=(LO,)),
]


def chat(**fields: Any) -> bytes:
    return json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "Hi"}], **fields}
    ).encode()


def completion(**fields: Any) -> bytes:
    return json.dumps({"model": "m", "prompt": "Once", **fields}).encode()


def output() -> GeneratedOutput:
    whole = GeneratedOutput()
    for piece in PIECES:
        whole.add(piece)
    return whole


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({}, None), ({"logprobs": False}, None), ({"logprobs": True}, 0)]
    + [({"logprobs": True, "top_logprobs": n}, n) for n in (0, 5, 20)],
)
def test_chat_logprobs_requests(fields: dict[str, Any], expected: int | None) -> None:
    assert parse_chat_completion(chat(**fields)).request.logprobs == expected


@pytest.mark.parametrize(("logprobs", "expected"), [(None, None), (0, 0), (5, 5)])
def test_completion_logprobs_requests(logprobs: int | None, expected: int | None) -> None:
    assert parse_completion(completion(logprobs=logprobs)).request.logprobs == expected


@pytest.mark.parametrize(
    ("parse", "body", "param", "code"),
    [
        (parse_chat_completion, chat(top_logprobs=2), "top_logprobs", "invalid_value"),
        (
            parse_chat_completion,
            chat(logprobs=False, top_logprobs=2),
            "top_logprobs",
            "invalid_value",
        ),
        (
            parse_chat_completion,
            chat(logprobs=True, top_logprobs=21),
            "top_logprobs",
            "invalid_value",
        ),
        (
            parse_chat_completion,
            chat(logprobs=True, top_logprobs=-1),
            "top_logprobs",
            "invalid_value",
        ),
        (
            parse_chat_completion,
            chat(logprobs=True, top_logprobs=1.5),
            "top_logprobs",
            "invalid_type",
        ),
        (parse_chat_completion, chat(logprobs=3), "logprobs", "invalid_type"),
        (parse_completion, completion(logprobs=6), "logprobs", "invalid_value"),
        (parse_completion, completion(logprobs=-1), "logprobs", "invalid_value"),
        (parse_completion, completion(logprobs=True), "logprobs", "invalid_type"),
    ],
)
def test_bad_logprobs_requests_are_rejected(parse: Any, body: bytes, param: str, code: str) -> None:
    with pytest.raises(OpenAIError) as raised:
        parse(body)

    assert (raised.value.status, raised.value.param, raised.value.code) == (400, param, code)
    assert param in raised.value.message


def test_a_whole_chat_answer_carries_logprobs_only_when_asked() -> None:
    asked = ChatCompletion.model_validate(chat_completion(HEADER, output(), DONE, logprobs=True))
    not_asked = ChatCompletion.model_validate(chat_completion(HEADER, output(), DONE))

    logprobs = asked.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert [(entry.token, entry.logprob, entry.bytes) for entry in logprobs.content] == [
        ("Hel", -0.1, [72, 101, 108]),
        ("lo", -0.3, [108, 111]),
    ]
    assert [(top.token, top.logprob) for top in logprobs.content[0].top_logprobs] == [
        ("Hel", -0.1),
        ("Hi", -2.5),
    ]
    assert logprobs.refusal is None
    assert not_asked.choices[0].logprobs is None


def test_streamed_chat_chunks_carry_their_tokens_logprobs() -> None:
    stream = ChatStream(HEADER, logprobs=True, include_usage=False)
    chunks = [ChatCompletionChunk.model_validate(c) for p in PIECES for c in stream.piece(p)]

    per_chunk = [chunk.choices[0].logprobs for chunk in chunks]
    assert [[entry.token for entry in lp.content or []] for lp in per_chunk if lp] == [
        ["Hel"],
        ["lo"],
    ]
    whole = ChatCompletion.model_validate(chat_completion(HEADER, output(), DONE, logprobs=True))
    joined = [entry for lp in per_chunk if lp for entry in lp.content or []]
    assert ChoiceLogprobs(content=joined, refusal=None) == whole.choices[0].logprobs


def test_a_completion_answer_carries_the_legacy_logprobs_object() -> None:
    body = text_completion(HEADER, output(), DONE, logprobs=True)

    logprobs = Completion.model_validate(body).choices[0].logprobs
    assert logprobs is not None
    assert logprobs.tokens == ["Hel", "lo"]
    assert logprobs.token_logprobs == [-0.1, -0.3]
    assert logprobs.top_logprobs == [{"Hel": -0.1, "Hi": -2.5}, {"lo": -0.3}]
    assert logprobs.text_offset == [0, 3]


def test_streamed_completion_offsets_count_from_the_start_of_the_answer() -> None:
    stream = TextStream(HEADER, logprobs=True, include_usage=False)

    chunks = [chunk for piece in PIECES for chunk in stream.piece(piece)]

    offsets = [chunk["choices"][0]["logprobs"]["text_offset"] for chunk in chunks]
    assert offsets == [[0], [3]]


# -- through real processes ------------------------------------------------------------------


@pytest.fixture
def client(control_plane: ControlPlane, start_agent: StartAgent) -> Iterator[openai.OpenAI]:
    start_agent("logprobs")
    yield openai.OpenAI(base_url=control_plane.inference_url + "/v1", api_key="x", max_retries=0)


def test_greedy_tokens_are_their_most_likely_alternatives(
    client: openai.OpenAI, smollm2_path: Path
) -> None:
    completion = client.chat.completions.create(
        model=smollm2_path.stem,
        messages=[{"role": "user", "content": "Name three colours."}],
        max_tokens=12,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )

    choice = completion.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content is not None
    entries = choice.logprobs.content
    assert completion.usage is not None
    assert len(entries) == completion.usage.completion_tokens
    assert "".join(entry.token for entry in entries) == choice.message.content
    for entry in entries:
        tops = entry.top_logprobs
        assert len(tops) == 3
        assert [top.logprob for top in tops] == sorted((top.logprob for top in tops), reverse=True)
        assert tops[0].token == entry.token
        assert math.isclose(tops[0].logprob, entry.logprob, abs_tol=1e-5)
        assert entry.logprob <= 0
        assert bytes(entry.bytes or []).decode("utf-8", errors="replace") == entry.token
    assert sum(math.exp(top.logprob) for top in entries[0].top_logprobs) <= 1 + 1e-5


def test_streamed_logprobs_match_the_whole_answer(
    client: openai.OpenAI, smollm2_path: Path
) -> None:
    request: Any = {
        "model": smollm2_path.stem,
        "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": 12,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
    }
    whole = client.chat.completions.create(**request)
    chunks = list(client.chat.completions.create(**request, stream=True))

    streamed = [
        (entry.token, round(entry.logprob, 4))
        for chunk in chunks
        if chunk.choices and chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content or []
    ]
    assert whole.choices[0].logprobs is not None
    assert streamed == [
        (entry.token, round(entry.logprob, 4)) for entry in whole.choices[0].logprobs.content or []
    ]


def test_completions_logprobs(client: openai.OpenAI, smollm2_path: Path) -> None:
    completion = client.completions.create(
        model=smollm2_path.stem, prompt="1, 2, 3,", max_tokens=8, temperature=0, logprobs=2
    )

    choice = completion.choices[0]
    logprobs = choice.logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.top_logprobs
    assert completion.usage is not None
    assert len(logprobs.tokens) == completion.usage.completion_tokens
    assert "".join(logprobs.tokens) == choice.text
    assert logprobs.text_offset == [
        sum(len(token) for token in logprobs.tokens[:index])
        for index in range(len(logprobs.tokens))
    ]
    for token, logprob, alternatives in zip(
        logprobs.tokens, logprobs.token_logprobs or [], logprobs.top_logprobs, strict=True
    ):
        assert 1 <= len(alternatives) <= 3
        assert max(alternatives.values()) == pytest.approx(logprob, abs=1e-5)
        assert alternatives[token] == pytest.approx(logprob, abs=1e-5)
