"""The simple engine, on the real SmolLM2-135M-Instruct model, and its pure text helpers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.engine.detokenizer import TextStream, Utf8Stream
from agent.engine.engine import Engine, EngineError, GenerationResult
from agent.engine.model import Model
from agent.engine.stop_strings import StopStrings
from paddler.chat_template import ChatTemplate, ChatTemplateError
from paddler.protocol import ChatMessage, GenerationRequest, SamplingParams
from tests.engines import loaded_engine

CONTEXT_SIZE = 1024
COUNTING = "1, 2, 3, 4, 5, 6,"  # greedy decoding keeps counting: no early end of generation
QUESTION = (ChatMessage(role="user", content="Write a short poem about the sea."),)


@dataclass
class Run:
    result: GenerationResult
    pieces: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[Engine]:
    with loaded_engine(smollm2_path, slots=2, context_size=CONTEXT_SIZE) as engine:
        yield engine


def chat(**sampling: object) -> GenerationRequest:
    return GenerationRequest(
        kind="chat", messages=QUESTION, sampling=SamplingParams.model_validate(sampling)
    )


def completion(prompt: str = COUNTING, **sampling: object) -> GenerationRequest:
    return GenerationRequest(
        kind="completion", prompt=prompt, sampling=SamplingParams.model_validate(sampling)
    )


async def run(
    engine: Engine, request: GenerationRequest, stop: threading.Event | None = None
) -> Run:
    pieces: list[str] = []
    result = await engine.generate(request, pieces.append, stop or threading.Event())
    assert engine.slots_busy == 0
    return Run(result, pieces)


# the engine on the real model


def test_describes_itself(engine: Engine) -> None:
    assert engine.model_name == "SmolLM2-135M-Instruct.Q4_1"
    assert (engine.slots_total, engine.slots_busy) == (2, 0)


async def test_chat_streams_text_on_the_loop_with_consistent_usage(
    engine: Engine, smollm2_path: Path
) -> None:
    threads: set[int] = set()
    pieces: list[str] = []

    def on_text(text: str) -> None:
        threads.add(threading.get_ident())
        pieces.append(text)

    result = await engine.generate(chat(temperature=0, max_tokens=24), on_text, threading.Event())

    assert threads == {threading.get_ident()}
    assert "".join(pieces).strip()
    assert all(pieces)
    assert result.finish_reason in ("stop", "length")
    assert 0 < len(pieces) <= result.usage.completion_tokens <= 24
    assert result.seconds_to_first_token is not None
    assert 0 < result.seconds_to_first_token <= result.seconds_total

    model = Model.load(smollm2_path)
    try:
        assert model.chat_template is not None
        prompt = ChatTemplate(model.chat_template).render(QUESTION)
        assert prompt.endswith("<|im_start|>assistant\n")
        tokens = model.tokenize(prompt)
    finally:
        model.close()
    assert result.usage.prompt_tokens == len(tokens)


async def test_max_tokens_gives_exactly_that_many_tokens(engine: Engine) -> None:
    outcome = await run(engine, completion(temperature=0, max_tokens=8))
    assert outcome.result.finish_reason == "length"
    assert outcome.result.usage.completion_tokens == 8
    assert outcome.text.startswith(" 7")


async def test_greedy_is_deterministic_and_jobs_do_not_leak(engine: Engine) -> None:
    first = await run(engine, chat(temperature=0, max_tokens=16))
    other = await run(engine, completion("Once upon a time", temperature=0, max_tokens=8))
    again = await run(engine, chat(temperature=0, max_tokens=16))
    assert first.text == again.text != other.text
    assert first.result.usage == again.result.usage


async def test_seed_makes_sampling_reproducible(engine: Engine) -> None:
    texts = [
        (await run(engine, chat(temperature=1, max_tokens=16, seed=seed))).text
        for seed in (7, 7, 8, 9)
    ]
    assert texts[0] == texts[1]
    assert len(set(texts)) > 1


async def test_penalties_change_the_output(engine: Engine) -> None:
    plain = await run(engine, completion(temperature=0, max_tokens=12))
    penalised = await run(engine, completion(temperature=0, max_tokens=12, frequency_penalty=1.5))
    assert plain.text != penalised.text


async def test_stop_string_across_token_boundaries(engine: Engine) -> None:
    full = await run(engine, chat(temperature=0, max_tokens=24))
    assert len(full.pieces) == full.result.usage.completion_tokens  # one piece per token
    # a stop string made of the end of one piece and the start of the next
    middle = next(i for i in range(3, len(full.pieces)) if len(full.pieces[i].strip()) >= 2)
    stop = full.pieces[middle - 1][-2:] + full.pieces[middle][:2]
    expected = full.text[: full.text.index(stop)]

    stopped = await run(engine, chat(temperature=0, max_tokens=24, stop=[stop, "never seen"]))

    assert stopped.result.finish_reason == "stop"
    assert stopped.text == expected
    assert stop not in stopped.text
    assert stopped.result.usage.completion_tokens <= middle + 1


async def test_setting_stop_cancels_before_the_next_token(engine: Engine) -> None:
    stop = threading.Event()
    pieces: list[str] = []

    def on_text(text: str) -> None:
        pieces.append(text)
        if len(pieces) == 3:
            stop.set()

    result = await engine.generate(completion(temperature=0, max_tokens=200), on_text, stop)

    assert result.finish_reason == "cancelled"
    assert 3 <= result.usage.completion_tokens < 50
    assert engine.slots_busy == 0


async def test_cancelling_the_caller_stops_the_job_and_frees_the_slot(
    engine: Engine,
) -> None:
    stop = threading.Event()
    started = asyncio.Event()
    task = asyncio.create_task(
        engine.generate(completion(temperature=0, max_tokens=200), lambda _: started.set(), stop)
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stop.is_set()
    for _ in range(200):
        if engine.slots_busy == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.slots_busy == 0


async def test_slots_run_at_once_and_a_third_job_finds_none_free(engine: Engine) -> None:
    request = chat(temperature=0, max_tokens=16)
    both = [asyncio.create_task(run_without_check(engine, request)) for _ in range(2)]
    await asyncio.sleep(0)
    assert engine.slots_busy == 2

    with pytest.raises(EngineError) as caught:
        await engine.generate(request, lambda _: None, threading.Event())
    assert caught.value.code == "no_free_slot"

    first, second = await asyncio.gather(*both)
    assert first.result.finish_reason == second.result.finish_reason
    assert first.text == second.text
    assert first.text
    assert engine.slots_busy == 0


async def run_without_check(engine: Engine, request: GenerationRequest) -> Run:
    pieces: list[str] = []
    result = await engine.generate(request, pieces.append, threading.Event())
    return Run(result, pieces)


async def test_context_length_exceeded(engine: Engine) -> None:
    with pytest.raises(EngineError) as caught:
        await engine.generate(
            completion("Hello", max_tokens=CONTEXT_SIZE), lambda _: None, threading.Event()
        )
    assert caught.value.code == "context_length_exceeded"
    assert str(CONTEXT_SIZE) in caught.value.message
    assert str(CONTEXT_SIZE + 1) in caught.value.message  # "Hello" is one token
    assert engine.slots_busy == 0

    with pytest.raises(EngineError) as caught:
        await engine.generate(completion("word " * CONTEXT_SIZE), lambda _: None, threading.Event())
    assert caught.value.code == "context_length_exceeded"


async def test_max_tokens_none_uses_the_rest_of_the_context(engine: Engine) -> None:
    stop = threading.Event()
    stop.set()  # nothing is generated, but the request is accepted
    outcome = await run(engine, completion("word " * (CONTEXT_SIZE - 2)), stop)
    assert outcome.result.finish_reason == "cancelled"
    assert outcome.result.usage.completion_tokens == 0
    assert outcome.result.seconds_to_first_token is None


# pure helpers

HELLO = "héllo 😀"


def test_utf8_stream_never_splits_a_character() -> None:
    stream = Utf8Stream()
    released = [stream.feed(bytes([byte])) for byte in HELLO.encode()]
    assert "".join(released) + stream.finish() == HELLO
    assert released[:3] == ["h", "", "é"]
    assert released[-4:] == ["", "", "", "😀"]


def test_utf8_stream_replaces_what_never_decodes() -> None:
    stream = Utf8Stream()
    assert stream.feed(b"a\xff") == "a\ufffd"
    assert stream.feed("😀".encode()[:2]) == ""
    assert stream.finish() == "\ufffd"


def test_stop_strings_hold_back_possible_starts() -> None:
    stops = StopStrings(["bcd"])
    assert stops.feed("ab") == "a"
    assert stops.feed("cx") == "bcx"
    assert stops.feed("abc") == "a"
    assert stops.finish() == "bc"
    assert not stops.stopped


def test_stop_strings_drop_the_stop_and_everything_after() -> None:
    stops = StopStrings(["", "o w", "xyz"])
    released = [stops.feed(piece) for piece in ("hel", "lo", " wo", "rld")]
    assert released == ["hel", "l", "", ""]
    assert stops.stopped
    assert stops.finish() == ""


def test_the_earliest_stop_string_wins() -> None:
    stops = StopStrings(["ef", "bc"])
    assert stops.feed("abcdef") == "a"


def test_text_stream_with_multibyte_pieces_and_stop() -> None:
    data = HELLO.encode()
    pieces = [data[:2], data[2:5], data[5:9], data[9:]]  # é and 😀 split across pieces
    stream = TextStream(["o 😀"])
    released = [stream.feed(piece) for piece in pieces]
    assert "".join(released) == "héll"
    assert stream.stopped
    assert stream.finish() == ""

    stream = TextStream(["😀!"])
    released = [stream.feed(piece) for piece in pieces]
    assert "".join(released) == "héllo "
    assert stream.finish() == "😀"


def test_chatml_fallback_template() -> None:
    messages = (
        ChatMessage(role="developer", content="Be brief."),
        ChatMessage(role="user", content="Hi"),
    )
    assert ChatTemplate.chatml().render(messages) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_template_exceptions_become_chat_template_errors() -> None:
    template = ChatTemplate("{{ raise_exception('roles must alternate') }}")
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        template.render(QUESTION)
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{% for %}")
