"""The tiny test model loads through the agent's own loader, tokenizes losslessly and generates
to max_tokens.

Everything here goes through ``agent.engine.model.Model`` and ``agent.engine.Engine``, as
the agent loads models, so the tests run llama.cpp the way the product does (the same CPU buffer
policy included).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent.engine.engine import Engine
from agent.engine.model import Model
from paddler.protocol import ChatMessage, GenerationRequest, SamplingParams
from tests.tiny_model import BOS_ID, EOS_ID, IM_END_ID, IM_START_ID, build_tiny_gguf

PROMPT = "Hello world, the paddler"


def detokenize(model: Model, tokens: list[int], *, special: bool = False) -> str:
    return b"".join(model.piece(token, special=special) for token in tokens).decode("utf-8")


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path) -> Iterator[Model]:
    model = Model.load(tiny_model_path)
    yield model
    model.close()


@pytest.fixture
async def tiny_engine(tiny_model_path: Path) -> AsyncIterator[Engine]:
    engine = Engine(tiny_model_path, slots=1, context_size=512, threads=1)
    await engine.load()
    yield engine
    engine.close()


async def greedy_completion(engine: Engine, max_tokens: int = 32) -> tuple[str, int, str]:
    pieces: list[str] = []
    request = GenerationRequest(
        kind="completion",
        prompt=PROMPT,
        sampling=SamplingParams(temperature=0, max_tokens=max_tokens),
    )
    result = await engine.generate(request, pieces.append, threading.Event())
    return "".join(pieces), result.usage.completion_tokens, result.finish_reason


def test_metadata_vocabulary_and_template(tiny: Model) -> None:
    assert tiny.n_vocab < 512
    assert tiny.n_embd == 64
    assert tiny.bos_token == BOS_ID
    assert tiny.eos_token == EOS_ID
    assert tiny.is_end_of_generation(IM_END_ID)
    assert tiny.chat_template is not None
    assert tiny.chat_template.startswith("{% for message in messages %}")


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world!",
        "the quick brown fox: 42 + x_y = {z}; 'a' \"b\" ~`|\\",
        "tabs\tand\nnewlines and trailing spaces  ",
        "  two leading spaces",
    ],
)
def test_tokenize_detokenize_round_trip(tiny: Model, text: str) -> None:
    with_bos = tiny.tokenize(text)
    assert with_bos[0] == BOS_ID
    assert detokenize(tiny, with_bos) == text
    without_bos = tiny.tokenize(text, add_special=False)
    assert without_bos == with_bos[1:]
    assert detokenize(tiny, without_bos) == text


def test_chatml_markers_are_single_special_tokens(tiny: Model) -> None:
    text = "<|im_start|>user\nhi<|im_end|>"
    tokens = tiny.tokenize(text, add_special=False)
    assert tokens[0] == IM_START_ID
    assert tokens[-1] == IM_END_ID
    assert detokenize(tiny, tokens, special=True) == text
    assert detokenize(tiny, tokens) == "user\nhi"


async def test_greedy_generation_runs_to_max_tokens(tiny_engine: Engine) -> None:
    text, n_tokens, finish_reason = await greedy_completion(tiny_engine)
    assert n_tokens == 32
    assert finish_reason == "length"
    assert text.strip()
    assert (await greedy_completion(tiny_engine)) == (text, n_tokens, finish_reason)


async def test_chat_uses_the_chatml_template(tiny_engine: Engine, tiny: Model) -> None:
    request = GenerationRequest(
        kind="chat",
        messages=(ChatMessage(role="user", content="hi"),),
        sampling=SamplingParams(temperature=0, max_tokens=8),
    )
    result = await tiny_engine.generate(request, lambda _: None, threading.Event())
    rendered = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert result.usage.prompt_tokens == len(tiny.tokenize(rendered))
    assert result.usage.completion_tokens == 8
    assert result.finish_reason == "length"


async def test_same_seed_same_model_and_output(tmp_path: Path) -> None:
    first = build_tiny_gguf(tmp_path / "a.gguf", seed=7)
    second = build_tiny_gguf(tmp_path / "b.gguf", seed=7)
    other = build_tiny_gguf(tmp_path / "c.gguf", seed=8)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()

    outputs = []
    for path in (first, second, other):
        engine = Engine(path, slots=1, context_size=256, threads=1)
        await engine.load()
        try:
            outputs.append(await greedy_completion(engine))
        finally:
            engine.close()
    assert outputs[0] == outputs[1]
    assert outputs[0][0] != outputs[2][0]
    assert outputs[0][1] == outputs[2][1] == 32
