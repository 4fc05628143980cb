"""Per-token log probabilities from the engine, on the real SmolLM2-135M-Instruct model."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import llama_cpp
import pytest

from agent.engine.engine import Engine, GenerationResult
from agent.engine.logprobs import LogprobRecorder
from agent.engine.model import Model
from paddler.protocol import (
    MAX_TOP_LOGPROBS,
    ChatMessage,
    GenerationRequest,
    SamplingParams,
    TokenLogprob,
)
from tests.engines import loaded_engine

COUNTING = "1, 2, 3, 4, 5, 6,"  # greedy decoding keeps counting, one character per token
STORY = "Once upon a time"  # greedy decoding goes on in words of a few characters
QUESTION = (ChatMessage(role="user", content="Write a short poem about the sea."),)


@dataclass
class Run:
    result: GenerationResult
    # what the engine called, in order: ("text", str) or ("logprobs", tuple)
    calls: list[tuple[str, object]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(str(value) for kind, value in self.calls if kind == "text")

    @property
    def logprobs(self) -> list[TokenLogprob]:
        return [
            logprob
            for kind, value in self.calls
            if kind == "logprobs"
            for logprob in value  # type: ignore[attr-defined]
        ]


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[Engine]:
    with loaded_engine(smollm2_path, slots=2, context_size=1024) as engine:
        yield engine


def completion(
    logprobs: int | None, prompt: str = COUNTING, **sampling: object
) -> GenerationRequest:
    return GenerationRequest(
        kind="completion",
        prompt=prompt,
        sampling=SamplingParams.model_validate(sampling),
        logprobs=logprobs,
    )


def chat(logprobs: int | None, **sampling: object) -> GenerationRequest:
    return GenerationRequest(
        kind="chat",
        messages=QUESTION,
        sampling=SamplingParams.model_validate(sampling),
        logprobs=logprobs,
    )


async def run(engine: Engine, request: GenerationRequest, *, listen: bool = True) -> Run:
    calls: list[tuple[str, object]] = []
    result = await engine.generate(
        request,
        lambda text: calls.append(("text", text)),
        threading.Event(),
        on_logprobs=(lambda logprobs: calls.append(("logprobs", logprobs))) if listen else None,
    )
    return Run(result, calls)


async def test_greedy_top_alternative_is_the_sampled_token(engine: Engine) -> None:
    outcome = await run(engine, chat(MAX_TOP_LOGPROBS, temperature=0, max_tokens=24))

    assert outcome.logprobs
    for logprob in outcome.logprobs:
        best = logprob.top_logprobs[0]
        assert (best.token, best.bytes, best.logprob) == (
            logprob.token,
            logprob.bytes,
            logprob.logprob,
        )
        assert len(logprob.top_logprobs) == MAX_TOP_LOGPROBS
        values = [alternative.logprob for alternative in logprob.top_logprobs]
        assert values == sorted(values, reverse=True)
        assert all(value <= 0 for value in values)
        assert logprob.logprob <= 0
        assert sum(math.exp(value) for value in values) <= 1 + 1e-6
    # the model is sure of some tokens and less of others
    assert max(lp.logprob for lp in outcome.logprobs) > math.log(0.9)
    assert min(lp.logprob for lp in outcome.logprobs) < math.log(0.9)


async def test_every_token_is_reported_and_their_texts_make_the_text(engine: Engine) -> None:
    outcome = await run(engine, completion(2, temperature=0, max_tokens=12))

    assert outcome.result.finish_reason == "length"
    assert len(outcome.logprobs) == outcome.result.usage.completion_tokens == 12
    assert "".join(lp.token for lp in outcome.logprobs) == outcome.text
    assert all(len(lp.top_logprobs) == 2 for lp in outcome.logprobs)
    # each token's log probability goes out just before the text it made
    assert outcome.calls[0][0] == "logprobs"
    kinds = [kind for kind, _ in outcome.calls]
    assert kinds == ["logprobs", "text"] * 12


async def test_sampled_tokens_come_from_the_raw_distribution(engine: Engine) -> None:
    outcome = await run(engine, chat(5, temperature=1.5, seed=3, max_tokens=24))

    assert len(outcome.logprobs) == outcome.result.usage.completion_tokens
    for logprob in outcome.logprobs:
        assert logprob.logprob <= 0
        top = logprob.top_logprobs
        if logprob.token in [alternative.token for alternative in top]:
            assert logprob.logprob in [alternative.logprob for alternative in top]
        else:  # not among the five most likely: no likelier than the fifth
            assert logprob.logprob <= top[-1].logprob


async def test_tokens_of_a_stop_string_are_not_reported(engine: Engine) -> None:
    full = await run(engine, completion(0, STORY, temperature=0, max_tokens=16))
    tokens = [lp.token for lp in full.logprobs]
    # a stop string made of the last character of a longer token and all of the next one
    cut = next(
        i
        for i in range(2, len(tokens) - 1)
        if len(tokens[i]) >= 2
        and full.text.find(tokens[i][-1] + tokens[i + 1]) == len("".join(tokens[: i + 1])) - 1
    )
    stop = tokens[cut][-1] + tokens[cut + 1]

    stopped = await run(engine, completion(0, STORY, temperature=0, max_tokens=16, stop=[stop]))

    assert stopped.result.finish_reason == "stop"
    assert stopped.result.usage.completion_tokens == cut + 2
    assert stopped.text == "".join(tokens[: cut + 1])[:-1]
    # the cut token's text was partly released, so it is reported; the next one's never was
    assert [lp.token for lp in stopped.logprobs] == tokens[: cut + 1]
    assert all(lp.top_logprobs == () for lp in stopped.logprobs)


async def test_held_text_takes_its_logprobs_out_at_the_end(engine: Engine) -> None:
    full = await run(engine, completion(1, temperature=0, max_tokens=6))
    last = full.logprobs[-1].token
    # a stop string that the last token's text starts but that never completes
    stop = last + "\u2603"

    held = await run(engine, completion(1, temperature=0, max_tokens=6, stop=[stop]))

    assert held.result.finish_reason == "length"
    assert held.text == full.text
    assert [lp.token for lp in held.logprobs] == [lp.token for lp in full.logprobs]
    kind, logprobs = held.calls[-2]
    assert kind == "logprobs"
    assert [lp.token for lp in logprobs] == [last]  # type: ignore[attr-defined]
    assert held.calls[-1] == ("text", last)


async def test_no_logprobs_unless_asked_and_listened_for(engine: Engine) -> None:
    plain = await run(engine, completion(None, temperature=0, max_tokens=6))
    assert plain.logprobs == []
    assert plain.text

    unheard = await run(engine, completion(3, temperature=0, max_tokens=6), listen=False)
    assert unheard.text == plain.text


async def test_logprobs_do_not_change_the_text(engine: Engine) -> None:
    plain = await run(engine, chat(None, temperature=0, max_tokens=16))
    scored = await run(engine, chat(20, temperature=0, max_tokens=16))
    assert scored.text == plain.text
    assert scored.result.finish_reason == plain.result.finish_reason
    assert scored.result.usage.completion_tokens == plain.result.usage.completion_tokens


def test_distribution_of_the_tiny_model_is_normalised(tiny_model_path: Path) -> None:
    """The recorder's log-softmax and top alternatives, on logits from a real decode."""
    model = Model.load(tiny_model_path)
    params = llama_cpp.llama_context_default_params()
    context = llama_cpp.llama_init_from_model(model.pointer, params)
    tokens = model.tokenize("ab")
    batch = llama_cpp.llama_batch_get_one(
        (llama_cpp.llama_token * len(tokens))(*tokens), len(tokens)
    )
    try:
        assert llama_cpp.llama_decode(context, batch) == 0
        recorder = LogprobRecorder(model, MAX_TOP_LOGPROBS)
        distribution = recorder.read(context, -1)
        top = distribution.top
        assert len(top) == MAX_TOP_LOGPROBS
        values = [alternative.logprob for alternative in top]
        assert values == sorted(values, reverse=True)
        assert sum(math.exp(value) for value in values) <= 1 + 1e-9
        total = sum(
            math.exp(distribution.report(token, b"").logprob) for token in range(model.n_vocab)
        )
        assert total == pytest.approx(1, abs=1e-6)
    finally:
        llama_cpp.llama_free(context)
        model.close()


async def test_bytes_of_a_split_character_go_out_with_it(tiny_model_path: Path) -> None:
    """The tiny model spells "é" with two byte tokens (a grammar makes it): neither has
    text of its own, and both are reported just before the character."""
    engine = Engine(tiny_model_path, slots=1, context_size=256, threads=1)
    await engine.load()
    try:
        request = completion(3, "ab", temperature=0, max_tokens=4, grammar='root ::= "éé"')
        outcome = await run(engine, request)
    finally:
        engine.close()

    assert outcome.text == "éé"
    assert [(lp.token, lp.bytes) for lp in outcome.logprobs] == [("", (0xC3,)), ("", (0xA9,))] * 2
    assert [kind for kind, _ in outcome.calls] == ["logprobs", "text"] * 2
    assert all(len(lp.top_logprobs) == 3 for lp in outcome.logprobs)
