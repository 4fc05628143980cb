"""The embedder on real models: SmolLM2 (bundled) and the tiny generated llama."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest

from agent.engine.embedder import Embedder, pooling_type
from agent.engine.embedding_service import EmbeddingService
from agent.engine.errors import EngineError
from agent.engine.model import Model
from paddler.protocol import CONTEXT_LENGTH_EXCEEDED

TEXTS = [
    "The cat sat on the mat.",
    "Paddles move a canoe through still water.",
    "The cat sat on the mat.",
    "Quarterly revenue grew by five percent.",
    "é 😀 ✓",
]
# The same input batched with others or alone goes through differently shaped llama.cpp kernels:
# its vectors agree up to float rounding (1 - cosine: ~1e-8 typically, ~2e-5 at worst seen).
SAME_DIRECTION = 1 - 1e-4


@pytest.fixture(scope="module", params=["smollm2", "tiny"])
def embedder(
    request: pytest.FixtureRequest, smollm2_path: Path, tiny_model_path: Path
) -> Iterator[Embedder]:
    model = Model.load(smollm2_path if request.param == "smollm2" else tiny_model_path)
    embedder = Embedder(model, context_size=256, threads=2, max_sequences=4)
    yield embedder
    embedder.close()
    model.close()


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(value * value for value in vector))


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def assert_equal_vectors(a: list[float], b: list[float]) -> None:
    assert cosine(a, b) > SAME_DIRECTION


def test_vectors_have_the_model_width_and_unit_length(embedder: Embedder) -> None:
    outcome = embedder.embed(TEXTS)
    assert len(outcome.vectors) == len(TEXTS)
    for vector in outcome.vectors:
        assert len(vector) == embedder.model.n_embd
        assert norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_prompt_tokens_count_every_input(embedder: Embedder) -> None:
    outcome = embedder.embed(TEXTS)
    assert outcome.prompt_tokens == sum(len(embedder.model.tokenize(text)) for text in TEXTS)


def test_equal_inputs_give_equal_vectors_batched_or_alone(embedder: Embedder) -> None:
    together = embedder.embed(TEXTS).vectors
    assert_equal_vectors(together[0], together[2])
    for text, vector in zip(TEXTS, together, strict=True):
        [alone] = embedder.embed([text]).vectors
        assert_equal_vectors(alone, vector)


def test_different_inputs_give_different_vectors(embedder: Embedder) -> None:
    vectors = embedder.embed(TEXTS).vectors
    distinct = [vectors[0], vectors[1], vectors[3], vectors[4]]
    for index, vector in enumerate(distinct):
        for other in distinct[index + 1 :]:
            assert cosine(vector, other) < 0.9999


def test_more_inputs_than_one_batch_holds_keep_their_order(embedder: Embedder) -> None:
    # 4 sequences per batch and 256 tokens per batch: 11 inputs take several decodes
    texts = [f"item number {index} " * (1 + index) for index in range(11)]
    vectors = embedder.embed(texts).vectors
    for text, vector in zip(texts, vectors, strict=True):
        assert_equal_vectors(embedder.embed([text]).vectors[0], vector)


def test_an_input_of_exactly_the_context_size_fits(embedder: Embedder) -> None:
    model = embedder.model
    text = "a"
    while len(model.tokenize(text + " a")) <= embedder.context_size:
        text += " a"
    outcome = embedder.embed(["short", text])
    assert len(outcome.vectors) == 2 and outcome.prompt_tokens <= 2 * embedder.context_size


def test_an_input_longer_than_the_context_is_refused_by_index(embedder: Embedder) -> None:
    with pytest.raises(EngineError) as refused:
        embedder.embed(["fine", "word " * 400])
    assert refused.value.code == CONTEXT_LENGTH_EXCEEDED
    assert "input[1]" in refused.value.message
    assert embedder.embed(["fine"]).vectors, "the embedder still works afterwards"


def test_causal_models_without_pooling_get_mean_pooling(embedder: Embedder) -> None:
    assert pooling_type(embedder.model) == llama_cpp.LLAMA_POOLING_TYPE_MEAN
    assert embedder.pooling == llama_cpp.LLAMA_POOLING_TYPE_MEAN


def test_similar_sentences_are_closer_than_unrelated_ones(smollm2_path: Path) -> None:
    model = Model.load(smollm2_path)
    embedder = Embedder(model, context_size=128, threads=2)
    try:
        cat, kitten, revenue = embedder.embed(
            [
                "The cat sat on the mat.",
                "A kitten was sitting on the rug.",
                "Quarterly revenue grew by five percent.",
            ]
        ).vectors
    finally:
        embedder.close()
        model.close()
    assert cosine(cat, kitten) > cosine(cat, revenue)


async def test_service_embeds_off_the_event_loop(tiny_model_path: Path) -> None:
    service = EmbeddingService(tiny_model_path, context_size=128, threads=1)
    await service.load()
    await service.load()  # a second load is a no-op
    try:
        assert service.dimensions == 64
        first, second = await service.embed(["hello"]), await service.embed(["hello", "world"])
        assert_equal_vectors(first.vectors[0], second.vectors[0])
        with pytest.raises(EngineError):
            await service.embed(["x " * 200])
    finally:
        service.close()
