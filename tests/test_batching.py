"""The continuous-batching engine: many sequences in one context, sampling, prompt cache, KV."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from agent.engine.engine import Engine, EngineError, GenerationResult
from agent.engine.model import Model
from paddler.protocol import (
    INVALID_GRAMMAR,
    INVALID_LOGIT_BIAS,
    KV_CACHE_FULL,
    ChatMessage,
    GenerationRequest,
    ResponseFormat,
    SamplingParams,
)
from tests.engines import loaded_engine

STORIES = tuple(
    f"Story number {index}: once upon a time, in a land of {place}, there lived"
    for index, place in enumerate(("ice", "sand", "rivers", "glass", "bells", "moss"))
)
LONG_PREFIX = " ".join(f"Rule {index}: be kind to the number {index}." for index in range(60))


def completion(prompt: str, **sampling: object) -> GenerationRequest:
    return GenerationRequest(
        kind="completion", prompt=prompt, sampling=SamplingParams.model_validate(sampling)
    )


def chat(text: str, **sampling: object) -> GenerationRequest:
    return GenerationRequest(
        kind="chat",
        messages=(ChatMessage(role="user", content=text),),
        sampling=SamplingParams.model_validate(sampling),
    )


async def generate(engine: Engine, request: GenerationRequest) -> tuple[str, GenerationResult]:
    pieces: list[str] = []
    result = await engine.generate(request, pieces.append, threading.Event())
    return "".join(pieces), result


@pytest.fixture(scope="module")
def smollm2(smollm2_path: Path) -> Iterator[Engine]:
    with loaded_engine(smollm2_path, slots=4, context_size=1024) as engine:
        yield engine


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path) -> Iterator[Engine]:
    with loaded_engine(tiny_model_path, slots=4, context_size=256, batch_size=64) as engine:
        yield engine


@pytest.fixture(params=["smollm2", "tiny"])
def either(request: pytest.FixtureRequest) -> Engine:
    engine: Engine = request.getfixturevalue(request.param)
    return engine


async def test_batched_output_equals_single_sequence_output(either: Engine) -> None:
    engine = either
    requests = [completion(story, temperature=0, max_tokens=40) for story in STORIES[:4]]
    alone = [await generate(engine, each) for each in requests]
    together = await asyncio.gather(*(generate(engine, each) for each in requests))
    assert [text for text, _ in together] == [text for text, _ in alone]
    assert [r.usage.completion_tokens for _, r in together] == [
        r.usage.completion_tokens for _, r in alone
    ]
    assert engine.slots_busy == 0


async def test_a_long_prompt_joins_running_streams_in_chunks(tiny: Engine) -> None:
    """A prompt far longer than the step budget is prefilled alongside running sequences."""
    short = completion(STORIES[0], temperature=0, max_tokens=60)
    long_prompt = completion(LONG_PREFIX[:200], temperature=0, max_tokens=8)
    expected_short, _ = await generate(tiny, short)
    expected_long, long_alone = await generate(tiny, long_prompt)
    assert long_alone.usage.prompt_tokens > tiny.batch_size

    running = asyncio.create_task(generate(tiny, short))
    await asyncio.sleep(0.01)
    joined = await generate(tiny, long_prompt)
    assert joined[0] == expected_long
    assert (await running)[0] == expected_short


async def test_prefix_reuse_reports_cached_tokens_and_gives_the_same_text(
    smollm2: Engine,
) -> None:
    first = chat(LONG_PREFIX + " Which rule is first?", temperature=0, max_tokens=12)
    second = chat(LONG_PREFIX + " Which rule is last?", temperature=0, max_tokens=12)
    await generate(smollm2, first)
    text, result = await generate(smollm2, second)
    assert result.usage.cached_tokens > 500
    assert result.usage.cached_tokens < result.usage.prompt_tokens

    cold = Engine(smollm2.model_path, slots=1, context_size=1024, threads=1, prompt_cache=False)
    await cold.load()
    try:
        await generate(cold, first)
        cold_text, cold_result = await generate(cold, second)
    finally:
        cold.close()
    assert cold_result.usage.cached_tokens == 0
    assert cold_text == text


async def test_the_same_prompt_twice_reuses_all_but_its_last_token(tiny: Engine) -> None:
    request = completion(STORIES[5], temperature=0, max_tokens=5)
    first_text, _ = await generate(tiny, request)
    again_text, again = await generate(tiny, request)
    assert again.usage.cached_tokens == again.usage.prompt_tokens - 1
    assert again_text == first_text
    assert tiny.stats().prompt_cache_hit_rate is not None


async def test_json_schema_constrains_the_output(smollm2: Engine) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    request = chat(
        "Describe a person as JSON.",
        temperature=0,
        max_tokens=60,
        response_format=ResponseFormat(type="json_schema", json_schema=schema),
    )
    text, result = await generate(smollm2, request)
    assert result.finish_reason == "stop"
    jsonschema.validate(json.loads(text), schema)


async def test_json_object_mode_gives_a_json_object(smollm2: Engine) -> None:
    request = chat(
        "List two colours.",
        temperature=0.8,
        seed=3,
        max_tokens=80,
        response_format=ResponseFormat(type="json_object"),
    )
    text, result = await generate(smollm2, request)
    assert result.finish_reason == "stop"
    assert isinstance(json.loads(text), dict)


async def test_a_bad_grammar_is_refused_before_any_work(tiny: Engine) -> None:
    with pytest.raises(EngineError) as caught:
        await generate(tiny, completion("x", grammar="root ::= (", max_tokens=4))
    assert caught.value.code == INVALID_GRAMMAR
    assert tiny.slots_busy == 0


async def test_logit_bias_bans_and_forces_tokens(smollm2: Engine, smollm2_path: Path) -> None:
    prompt = "The capital of France is"
    greedy, _ = await generate(smollm2, completion(prompt, temperature=0, max_tokens=1))
    model = Model.load(smollm2_path)
    try:
        chosen = model.tokenize(greedy, add_special=False)
        forced_token = model.tokenize(" banana", add_special=False)[0]
        forced_piece = model.piece(forced_token).decode()
    finally:
        model.close()
    assert len(chosen) == 1
    banned, _ = await generate(
        smollm2, completion(prompt, temperature=0, max_tokens=1, logit_bias={chosen[0]: -100})
    )
    assert banned != greedy
    forced, _ = await generate(
        smollm2,
        completion(prompt, temperature=0, max_tokens=3, logit_bias={forced_token: 100}),
    )
    assert forced == forced_piece * 3


async def test_a_logit_bias_for_a_token_the_model_lacks_is_refused(tiny: Engine) -> None:
    with pytest.raises(EngineError) as caught:
        await generate(tiny, completion("x", max_tokens=2, logit_bias={10**7: 5.0}))
    assert caught.value.code == INVALID_LOGIT_BIAS


async def test_top_k_one_is_greedy_whatever_the_temperature(smollm2: Engine) -> None:
    greedy, _ = await generate(smollm2, completion(STORIES[1], temperature=0, max_tokens=20))
    for seed in (1, 2):
        sampled, _ = await generate(
            smollm2, completion(STORIES[1], temperature=1.5, top_k=1, seed=seed, max_tokens=20)
        )
        assert sampled == greedy


async def test_cancelling_one_sequence_leaves_the_others_running(tiny: Engine) -> None:
    stop = threading.Event()
    pieces: list[str] = []

    def on_text(text: str) -> None:
        pieces.append(text)
        if len(pieces) == 3:
            stop.set()

    expected, _ = await generate(tiny, completion(STORIES[2], temperature=0, max_tokens=50))
    cancelled, survivor = await asyncio.gather(
        tiny.generate(completion(STORIES[3], temperature=0, max_tokens=200), on_text, stop),
        generate(tiny, completion(STORIES[2], temperature=0, max_tokens=50)),
    )
    assert cancelled.finish_reason == "cancelled"
    assert cancelled.usage.completion_tokens < 200
    assert survivor[0] == expected
    assert tiny.slots_busy == 0


async def test_kv_exhaustion_ends_one_request_and_the_others_continue(
    tiny_model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Four slots overcommit 256 shared KV cells; each request wants up to ~115 of them.

    When the cache runs out the decoder either ends the sequence holding the most cells
    (KV_CACHE_FULL) or, if some sequences are already generating while others prefill, pauses
    the prefills until one finishes: which one depends on when each request reached the
    decoder. Either way no request is cut short silently, and the engine serves on."""
    engine = Engine(tiny_model_path, slots=4, context_size=128, threads=1, kv_size=256)
    await engine.load()
    try:
        outcomes = await asyncio.gather(
            *(
                generate(engine, completion(story, temperature=0, max_tokens=60))
                for story in STORIES[:4]
            ),
            return_exceptions=True,
        )
        failures = [o for o in outcomes if isinstance(o, EngineError)]
        finished = [o for o in outcomes if not isinstance(o, BaseException)]
        assert "failed to find a memory slot" in caplog.text  # the cache did run out
        assert len(failures) + len(finished) == 4
        assert all(error.code == KV_CACHE_FULL for error in failures)
        assert finished and all(r.usage.completion_tokens == 60 for _, r in finished)
        assert engine.slots_busy == 0
        text, result = await generate(engine, completion(STORIES[0], max_tokens=10))
        assert result.usage.completion_tokens == 10 and text
    finally:
        engine.close()


async def test_stats_describe_the_engine(tiny: Engine) -> None:
    tiny.stats()
    await generate(tiny, completion(STORIES[4], temperature=0, max_tokens=30))
    stats = tiny.stats()
    assert stats.tokens_per_second > 0
    assert stats.active_sequences == 0
    assert 0 < stats.kv_cells_used <= stats.kv_cells_total
    assert stats.kv_cells_total >= 4 * 256


async def test_a_chat_template_override_is_used(tiny_model_path: Path) -> None:
    override = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"
    engine = Engine(tiny_model_path, slots=1, context_size=256, chat_template=override)
    await engine.load()
    try:
        _, result = await generate(engine, chat("hi", max_tokens=1))
        model = Model.load(tiny_model_path)
        try:
            expected = len(model.tokenize("<user>hi<assistant>"))
        finally:
            model.close()
        assert result.usage.prompt_tokens == expected
        assert engine.issues == ()
    finally:
        engine.close()


async def test_a_broken_template_is_an_issue_not_a_crash(tiny_model_path: Path) -> None:
    engine = Engine(
        tiny_model_path, slots=1, context_size=256, chat_template="{% for m in messages %}"
    )
    await engine.load()
    try:
        assert any("does not compile" in issue for issue in engine.issues)
        _, result = await generate(engine, chat("hi", max_tokens=2))
        assert result.usage.completion_tokens == 2
    finally:
        engine.close()


async def test_a_template_that_fails_to_render_is_reported(tiny_model_path: Path) -> None:
    engine = Engine(
        tiny_model_path, slots=1, context_size=256, chat_template="{{ messages[0].nope.deeper }}"
    )
    await engine.load()
    try:
        with pytest.raises(EngineError) as caught:
            await generate(engine, chat("hi", max_tokens=2))
        assert caught.value.code == "invalid_messages"
        assert any("failed to render" in issue for issue in engine.issues)
        assert engine.slots_busy == 0
    finally:
        engine.close()


async def test_multibyte_characters_split_across_tokens_arrive_whole(smollm2: Engine) -> None:
    """SmolLM2 spells an emoji as several byte tokens: no piece may carry half of one."""
    pieces: list[str] = []
    request = completion("😀😀😀😀 🎉🎉🎉🎉 😀😀😀😀 🎉🎉", temperature=0, max_tokens=16)
    result = await smollm2.generate(request, pieces.append, threading.Event())
    text = "".join(pieces)
    assert result.usage.completion_tokens > len(text.encode()) / 4  # multi-token characters
    # only a character that max_tokens cut short may end the text as U+FFFD
    assert "\ufffd" not in text.removesuffix("\ufffd")
    assert result.finish_reason == "length" or not text.endswith("\ufffd")
    assert sum(ord(character) > 0xFFFF for character in text) >= 3
