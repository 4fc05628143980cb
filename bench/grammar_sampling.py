"""What checking only the sampled token against a grammar buys over masking the vocabulary.

Runs the same greedy requests of the bundled SmolLM2 model through one in-process engine,
each three ways:
  plain    no grammar at all (the decoder's own speed, for reference);
  full     the grammar masks the whole vocabulary at every step (llama.cpp's grammar_first,
           what the sampler did before: the grammar inside the chain);
  checked  the chain picks, the grammar checks that token, and masks the vocabulary only
           when it refuses it (the sampler's way now);
and prints the median decode tokens/s of each, the checked/full ratio, and whether full
and checked wrote the same text (greedy decoding must). The requests: a json_schema
response_format and a tool call forced by tool_choice "required". Last, the sampler alone
on a bare context: its median milliseconds per token, full and checked.

    .venv/bin/python bench/grammar_sampling.py [--tokens 80] [--threads 2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.engine.engine import Engine
from agent.engine.model import Model
from agent.engine.sampler import Sampler
from paddler.bundled import bundled_model_path
from paddler.protocol import (
    ChatMessage,
    GenerationRequest,
    ResponseFormat,
    SamplingParams,
)
from tests.test_grammar_sampling import AS_JSON, decode_alone, sampler_of
from tests.test_tool_calls_agent import WEATHER

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "city": {"type": "string"},
        "hobbies": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "city", "hobbies"],
}


def json_request(tokens: int, *, constrained: bool = True) -> GenerationRequest:
    response_format = ResponseFormat(type="json_schema", json_schema=PERSON)
    return GenerationRequest(
        kind="chat",
        messages=(ChatMessage(role="user", content="Describe a person as JSON."),),
        sampling=SamplingParams(
            temperature=0,
            max_tokens=tokens,
            response_format=response_format if constrained else None,
        ),
    )


def tool_request(tokens: int, *, constrained: bool = True) -> GenerationRequest:
    return GenerationRequest(
        kind="chat",
        messages=(ChatMessage(role="user", content="What is the weather in Paris?"),),
        tools=(WEATHER,),
        tool_choice="required" if constrained else "none",
        sampling=SamplingParams(temperature=0, max_tokens=tokens),
    )


@contextmanager
def grammar_first(on: bool) -> Iterator[None]:
    Sampler.grammar_first = on
    try:
        yield
    finally:
        Sampler.grammar_first = False


async def decode(engine: Engine, request: GenerationRequest) -> tuple[str, int, float]:
    """The text, the tokens after the first, and the seconds they took."""
    pieces: list[str] = []
    result = await engine.generate(request, pieces.append, threading.Event())
    first = result.seconds_to_first_token or 0.0
    return "".join(pieces), result.usage.completion_tokens - 1, result.seconds_total - first


async def rates(
    engine: Engine, plain: GenerationRequest, constrained: GenerationRequest, repeat: int
) -> tuple[list[float], list[str]]:
    """The median tokens/s of plain, full and checked (run in turns, so a busy machine slows all
    three alike), and the texts of full and checked."""
    runs: list[list[float]] = [[], [], []]
    texts = ["", ""]
    for _ in range(repeat):
        for way, (request, full) in enumerate(
            ((plain, False), (constrained, True), (constrained, False))
        ):
            with grammar_first(full):
                text, tokens, seconds = await decode(engine, request)
            runs[way].append(tokens / seconds)
            if way:
                texts[way - 1] = text
    return [statistics.median(rates) for rates in runs], texts


class TimedSampler(Sampler):
    """A sampler that notes how long each pick takes."""

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.seconds: list[float] = []

    def sample(self, context: Any, index: int) -> int:
        started = time.perf_counter()
        token = super().sample(context, index)
        self.seconds.append(time.perf_counter() - started)
        return token


def sampling_cost(tokens: int) -> None:
    """The sampler alone, on a bare context: median milliseconds per pick, each way."""
    model = Model.load(bundled_model_path())
    try:
        medians = []
        for full in (True, False):
            with grammar_first(full):
                sampler = sampler_of(model, TimedSampler, temperature=0, response_format=AS_JSON)
                assert isinstance(sampler, TimedSampler)
                decode_alone(model, sampler, "A person, described as JSON: ", tokens)
            medians.append(statistics.median(sampler.seconds) * 1000)
        print(
            f"sampler alone, json_schema: full {medians[0]:.2f} ms/token, "
            f"checked {medians[1]:.2f} ms/token ({medians[0] / medians[1]:.0f}x less)"
        )
    finally:
        model.close()


async def main(tokens: int, threads: int, repeat: int) -> None:
    # no prompt cache: every run prefills alike, so greedy runs must give the same text
    engine = Engine(
        bundled_model_path(), slots=1, context_size=2048, threads=threads, prompt_cache=False
    )
    await engine.load()
    try:
        await decode(engine, json_request(8))  # warm up
        print(
            f"greedy, {tokens} new tokens at most, {threads} threads, median of {repeat} runs each"
        )
        print(
            f"{'request':<12}{'plain tok/s':>13}{'full tok/s':>12}{'checked tok/s':>15}"
            f"{'checked/full':>14}  same text"
        )
        for name, make in (("json_schema", json_request), ("tool call", tool_request)):
            medians, texts = await rates(
                engine, make(tokens, constrained=False), make(tokens), repeat
            )
            plain, full, checked = medians
            print(
                f"{name:<12}{plain:>13.1f}{full:>12.1f}{checked:>15.1f}"
                f"{checked / full:>13.1f}x  {texts[0] == texts[1]}"
            )
            print(f"  output: {texts[1]!r}")
    finally:
        engine.close()
    sampling_cost(tokens)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=80)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.tokens, arguments.threads, arguments.repeat))
