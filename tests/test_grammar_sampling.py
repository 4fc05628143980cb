"""Grammar-constrained sampling: the chain picks, the grammar checks that one token, and the
vocabulary is masked only when it refuses. On the real SmolLM2-135M-Instruct model (through
the engine, and through a bare llama.cpp context where the sampler's counter is read)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import llama_cpp
import pytest

from agent.chat_format import ToolGrammar
from agent.engine.engine import Engine, EngineError
from agent.engine.model import Model
from agent.engine.sampler import Sampler
from paddler import protocol
from paddler.protocol import (
    INVALID_GRAMMAR,
    INVALID_JSON_SCHEMA,
    INVALID_TOOLS,
    GenerationRequest,
    ResponseFormat,
    SamplingParams,
)
from tests.engines import loaded_engine
from tests.test_batching import chat, completion, generate
from tests.test_tool_calls_agent import (
    TEMPLATES,
    assert_valid,
    calls_of,
    done_of,
    serving,
    tool_request,
)
from tests.test_tool_calls_agent import run as run_job

COUNTING = "1, 2, 3, 4, 5, 6,"  # greedy decoding keeps counting
FOLLOWED = "root ::= [0-9, ]+"  # what greedy counting writes anyway
DIGITS = 'root ::= " "? [0-9]+'  # what the model would not write after FRANCE
FRANCE = "The capital of France is"
NAME = {"type": "string", "maxLength": 16}
PERSON = {
    "type": "object",
    "properties": {
        "name": NAME,
        "age": {"type": "integer"},
        "hobbies": {"type": "array", "items": NAME, "maxItems": 3},
    },
    "required": ["name", "age", "hobbies"],
}
AS_JSON = ResponseFormat(type="json_schema", json_schema=PERSON)


class GrammarFirst(Sampler):
    """llama.cpp's grammar_first: the grammar masks the whole vocabulary at every step."""

    grammar_first = True


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[Engine]:
    with loaded_engine(smollm2_path, slots=2, context_size=1024) as engine:
        yield engine


@pytest.fixture(scope="module")
def model(smollm2_path: Path) -> Iterator[Model]:
    model = Model.load(smollm2_path)
    yield model
    model.close()


async def text_of(engine: Engine, request: GenerationRequest) -> str:
    text, _ = await generate(engine, request)
    return text


def decode_alone(model: Model, sampler: Sampler, prompt: str, max_tokens: int) -> str:
    """Greedy-or-sampled text from ``sampler`` on a context of its own, token by token."""
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = params.n_batch = 512
    params.n_threads = params.n_threads_batch = 1
    context = llama_cpp.llama_init_from_model(model.pointer, params)
    tokens = model.tokenize(prompt)
    pieces: list[bytes] = []
    try:
        for _ in range(max_tokens):
            array = (llama_cpp.llama_token * len(tokens))(*tokens)
            assert (
                llama_cpp.llama_decode(context, llama_cpp.llama_batch_get_one(array, len(tokens)))
                == 0
            )
            token = sampler.sample(context, -1)
            if model.is_end_of_generation(token):
                break
            pieces.append(model.piece(token))
            tokens = [token]
    finally:
        llama_cpp.llama_free(context)
        sampler.close()
    return b"".join(pieces).decode()


def sampler_of(model: Model, kind: type[Sampler] = Sampler, **fields: object) -> Sampler:
    tool_grammar = fields.pop("tool_grammar", None)
    assert tool_grammar is None or isinstance(tool_grammar, ToolGrammar)
    return kind(
        SamplingParams.model_validate(fields),
        vocab=model.vocab,
        n_vocab=model.n_vocab,
        tool_grammar=tool_grammar,
    )


# through the engine


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 1.0, "seed": 4}])
async def test_json_schema_output_matches_the_schema(
    engine: Engine, sampling: dict[str, object]
) -> None:
    text = await text_of(
        engine,
        chat("Describe a person as JSON.", max_tokens=80, response_format=AS_JSON, **sampling),
    )
    jsonschema.validate(json.loads(text), PERSON)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_choice_grammar_gives_one_of_its_choices(engine: Engine, seed: int) -> None:
    grammar = 'root ::= "red" | "green" | "blue"'
    request = chat("Name a fruit.", temperature=1.5, seed=seed, max_tokens=8, grammar=grammar)
    assert await text_of(engine, request) in ("red", "green", "blue")


async def test_the_same_seed_gives_the_same_output(engine: Engine) -> None:
    request = chat(
        "Describe a person as JSON.",
        temperature=1.2,
        seed=9,
        max_tokens=80,
        response_format=AS_JSON,
    )
    first = await text_of(engine, request)
    assert await text_of(engine, request) == first
    jsonschema.validate(json.loads(first), PERSON)


async def test_greedy_with_a_grammar_it_follows_writes_what_it_would_anyway(
    engine: Engine,
) -> None:
    plain = await text_of(engine, completion(COUNTING, temperature=0, max_tokens=12))
    constrained = await text_of(
        engine, completion(COUNTING, temperature=0, max_tokens=12, grammar=FOLLOWED)
    )
    assert constrained == plain


@pytest.mark.parametrize("template", ["generic", "hermes"])
async def test_a_sampled_required_tool_call_is_valid(template: str, smollm2_path: Path) -> None:
    request = tool_request("required", parallel_tool_calls=False).model_copy(
        update={"sampling": SamplingParams(temperature=0.8, seed=5, max_tokens=80)}
    )
    async with serving(smollm2_path, TEMPLATES[template]) as jobs:
        frames = await run_job(jobs, request)
    calls = calls_of(frames)
    assert len(calls) == 1
    assert_valid(calls[0])
    assert done_of(frames).finish_reason == "tool_calls"
    assert not any(isinstance(f, protocol.Token) and f.text.strip() for f in frames)


# the sampler on a bare context: when it resamples


def test_a_grammar_the_model_follows_never_resamples(model: Model) -> None:
    sampler = sampler_of(model, temperature=0, grammar=FOLLOWED)
    text = decode_alone(model, sampler, COUNTING, 10)
    assert text.startswith(" 7, 8")
    assert sampler.resamples == 0


def test_a_grammar_the_model_would_not_follow_is_enforced_by_resampling(model: Model) -> None:
    assert not re.fullmatch(
        r" ?[0-9]+", decode_alone(model, sampler_of(model, temperature=0), FRANCE, 4)
    )
    for fields in ({"temperature": 0}, {"temperature": 1.0, "seed": 3, "top_k": 40}):
        sampler = sampler_of(model, grammar=DIGITS, **fields)
        assert re.fullmatch(r" ?[0-9]+", decode_alone(model, sampler, FRANCE, 4))
        assert sampler.resamples >= 1


def test_checking_picks_what_masking_the_whole_vocabulary_picks(model: Model) -> None:
    prompt = "A person, described as JSON: "
    for grammar in ({"response_format": AS_JSON}, {"grammar": DIGITS}):
        checked = sampler_of(model, temperature=0, **grammar)
        masked = sampler_of(model, GrammarFirst, temperature=0, **grammar)
        assert decode_alone(model, checked, prompt, 30) == decode_alone(model, masked, prompt, 30)
        assert masked.resamples == 0


def test_penalties_see_the_tokens_a_grammar_let_through(model: Model) -> None:
    plain = decode_alone(model, sampler_of(model, temperature=0, grammar=FOLLOWED), COUNTING, 12)
    penalised = sampler_of(model, temperature=0, grammar=FOLLOWED, repeat_penalty=1.5)
    assert decode_alone(model, penalised, COUNTING, 12) != plain


def test_a_lazy_grammar_lets_anything_through_until_its_trigger(model: Model) -> None:
    plain = decode_alone(model, sampler_of(model, temperature=0), COUNTING, 12)
    assert plain.startswith(" 7, 8, 9,")
    # after "8" the grammar holds: a letters-only word, then the end
    lazy = ToolGrammar('root ::= "8" [a-z] [a-z] [a-z]', triggers=(r"[\s\S]*?(8)[\s\S]*",))
    sampler = sampler_of(model, temperature=0, tool_grammar=lazy)
    text = decode_alone(model, sampler, COUNTING, 12)
    assert re.fullmatch(r" 7, 8[a-z]{3}", text), text
    assert sampler.resamples >= 1


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"grammar": "root ::= ("}, INVALID_GRAMMAR),
        ({"grammar": 'start ::= "x"'}, INVALID_GRAMMAR),
        (
            {"response_format": ResponseFormat(type="json_schema", json_schema={"$ref": "#/x"})},
            INVALID_JSON_SCHEMA,
        ),
        ({"tool_grammar": ToolGrammar("root ::= (")}, INVALID_TOOLS),
        ({"tool_grammar": ToolGrammar("root ::= (", triggers=("x",))}, INVALID_TOOLS),
    ],
)
def test_a_bad_grammar_is_an_engine_error(
    tiny_model_path: Path, fields: dict[str, Any], code: str
) -> None:
    model = Model.load(tiny_model_path)
    try:
        with pytest.raises(EngineError) as caught:
            sampler_of(model, temperature=0.5, logit_bias={1: 2.0}, **fields)
        assert caught.value.code == code
    finally:
        model.close()
