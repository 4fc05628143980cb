"""The tiny test model loads fast in llama.cpp, tokenizes losslessly and generates to max_tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest

from tests.tiny_model import EOS_ID, IM_END_ID, build_tiny_gguf

N_CTX = 512
PROMPT = "Hello world, the paddler"


def load(path: Path) -> llama_cpp.Llama:
    return llama_cpp.Llama(model_path=str(path), n_ctx=N_CTX, verbose=False, seed=0)


def greedy_completion(llm: llama_cpp.Llama, max_tokens: int = 32) -> tuple[str, int, str]:
    out = llm.create_completion(PROMPT, max_tokens=max_tokens, temperature=0.0)
    assert isinstance(out, dict)
    choice = out["choices"][0]
    return choice["text"], out["usage"]["completion_tokens"], str(choice["finish_reason"])


@pytest.fixture(scope="module")
def tiny_llm(tiny_model_path: Path) -> Iterator[llama_cpp.Llama]:
    llm = load(tiny_model_path)
    yield llm
    llm.close()


def test_loads_in_well_under_a_second(tiny_model_path: Path) -> None:
    start = time.perf_counter()
    llm = load(tiny_model_path)
    elapsed = time.perf_counter() - start
    try:
        print(
            f"tiny model: {tiny_model_path.stat().st_size} bytes, loaded in {elapsed * 1e3:.1f} ms"
        )
        assert elapsed < 0.5
        assert llm.n_vocab() < 512
        assert llm.n_ctx() == N_CTX
        assert llm.token_bos() == 1
        assert llm.token_eos() == EOS_ID
        assert llm.metadata["tokenizer.chat_template"].startswith("{% for message in messages %}")
    finally:
        llm.close()


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world!",
        "the quick brown fox: 42 + x_y = {z}; 'a' \"b\" ~`|\\",
        "tabs\tand\nnewlines and trailing spaces  ",
    ],
)
def test_tokenize_detokenize_round_trip(tiny_llm: llama_cpp.Llama, text: str) -> None:
    with_bos = tiny_llm.tokenize(text.encode())
    assert with_bos[0] == tiny_llm.token_bos()
    assert tiny_llm.detokenize(with_bos).decode() == text
    without_bos = tiny_llm.tokenize(text.encode(), add_bos=False)
    assert without_bos == with_bos[1:]
    assert tiny_llm.detokenize(without_bos).decode() == text


def test_no_space_prefix_is_added(tiny_llm: llama_cpp.Llama) -> None:
    text = "  two leading spaces"
    assert tiny_llm.detokenize(tiny_llm.tokenize(text.encode(), add_bos=False)).decode() == text
    # llama-cpp-python drops one leading space after BOS (a Llama-1 workaround).
    assert tiny_llm.detokenize(tiny_llm.tokenize(text.encode())).decode() == text[1:]


def test_chatml_markers_are_single_special_tokens(tiny_llm: llama_cpp.Llama) -> None:
    tokens = tiny_llm.tokenize(b"<|im_start|>user\nhi<|im_end|>", add_bos=False, special=True)
    assert tokens[0] == 3
    assert tokens[-1] == IM_END_ID
    assert tiny_llm.detokenize(tokens, special=True) == b"<|im_start|>user\nhi<|im_end|>"


def test_greedy_generation_runs_to_max_tokens(tiny_llm: llama_cpp.Llama) -> None:
    text, n_tokens, finish_reason = greedy_completion(tiny_llm)
    assert n_tokens == 32
    assert finish_reason == "length"
    assert text.strip()

    prompt = tiny_llm.tokenize(PROMPT.encode())
    generated: list[int] = []
    for token in tiny_llm.generate(prompt, temp=0.0):
        assert token not in (EOS_ID, IM_END_ID)
        generated.append(token)
        if len(generated) == 32:
            break
    assert tiny_llm.detokenize(generated).decode("utf-8") == text


def test_chat_completion_uses_the_chatml_template(tiny_llm: llama_cpp.Llama) -> None:
    out = tiny_llm.create_chat_completion(
        [{"role": "user", "content": "hi"}], max_tokens=8, temperature=0.0
    )
    assert isinstance(out, dict)
    assert out["usage"]["prompt_tokens"] > 8
    assert out["usage"]["completion_tokens"] == 8
    assert out["choices"][0]["finish_reason"] == "length"


def test_same_seed_same_model_and_output(tmp_path: Path) -> None:
    first = build_tiny_gguf(tmp_path / "a.gguf", seed=7)
    second = build_tiny_gguf(tmp_path / "b.gguf", seed=7)
    other = build_tiny_gguf(tmp_path / "c.gguf", seed=8)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()

    outputs = []
    for path in (first, second, other):
        llm = load(path)
        try:
            outputs.append(greedy_completion(llm))
        finally:
            llm.close()
    assert outputs[0] == outputs[1]
    assert outputs[0][1] == outputs[2][1] == 32


def test_much_faster_than_smollm2(tiny_llm: llama_cpp.Llama, smollm2_path: Path) -> None:
    timings: dict[str, float] = {}
    for name, llm in (("tiny", tiny_llm), ("smollm2", load(smollm2_path))):
        greedy_completion(llm, max_tokens=4)  # warm up
        start = time.perf_counter()
        _, n_tokens, _ = greedy_completion(llm, max_tokens=64)
        timings[name] = (time.perf_counter() - start) / n_tokens
        if llm is not tiny_llm:
            llm.close()
    print(
        f"per token: tiny {timings['tiny'] * 1e3:.2f} ms, smollm2 {timings['smollm2'] * 1e3:.2f} ms"
        f" ({timings['smollm2'] / timings['tiny']:.0f}x)"
    )
