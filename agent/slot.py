"""One slot: a llama.cpp context of its own and the token loop that runs a job in it.

Everything here is synchronous and runs on the slot's own thread; :mod:`agent.engine`
does the asyncio side.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp

from agent.detokenizer import TextStream
from paddler.protocol import FinishReason, SamplingParams

_RANDOM_SEED = llama_cpp.LLAMA_DEFAULT_SEED  # llama.cpp draws a seed of its own


@dataclass(frozen=True)
class Outcome:
    finish_reason: FinishReason
    completion_tokens: int
    first_token_at: float | None  # time.perf_counter() when the first token was sampled


class Sampler:
    """A llama.cpp sampler chain for one job, following OpenAI's sampling parameters."""

    def __init__(self, sampling: SamplingParams, *, n_vocab: int, penalty_window: int) -> None:
        self._chain = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        if sampling.presence_penalty or sampling.frequency_penalty:
            self._add(
                llama_cpp.llama_sampler_init_penalties(
                    n_vocab,
                    penalty_window,
                    1.0,
                    sampling.frequency_penalty,
                    sampling.presence_penalty,
                )
            )
        if sampling.temperature <= 0:
            self._add(llama_cpp.llama_sampler_init_greedy())
            return
        self._add(llama_cpp.llama_sampler_init_temp(sampling.temperature))
        if sampling.top_p < 1:
            self._add(llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
        seed = _RANDOM_SEED if sampling.seed is None else sampling.seed % _RANDOM_SEED
        self._add(llama_cpp.llama_sampler_init_dist(seed))

    def _add(self, sampler: Any) -> None:
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)

    def sample(self, context: Any) -> int:
        """Sample (and accept) a token from the logits of the last evaluated token."""
        return int(llama_cpp.llama_sampler_sample(self._chain, context, -1))

    def close(self) -> None:
        llama_cpp.llama_sampler_free(self._chain)


class Slot:
    """A model instance with its own context; runs one job at a time."""

    def __init__(self, llama: Any, context_size: int) -> None:
        self._llama = llama
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self.context_size = context_size

    @classmethod
    def load(cls, model_path: Path, *, context_size: int, threads: int) -> Slot:
        llama = llama_cpp.Llama(
            model_path=str(model_path),
            n_ctx=context_size,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        return cls(llama, context_size)

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._llama.metadata)

    def special_token_text(self, token: int) -> str:
        """The text of a special token such as BOS ("" if the model has none)."""
        if token < 0:
            return ""
        return self.piece(token, special=True).decode("utf-8", errors="replace")

    @property
    def bos_token(self) -> int:
        return int(self._llama.token_bos())

    @property
    def eos_token(self) -> int:
        return int(self._llama.token_eos())

    def tokenize(self, text: str) -> list[int]:
        """Tokens for ``text``, special tokens parsed, with BOS if the model wants one.

        Never empty: an empty text is the BOS (or else EOS) token, as in OpenAI's models.
        """
        tokens: list[int] = self._llama.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        bos = self.bos_token
        if len(tokens) >= 2 and tokens[0] == tokens[1] == bos:
            del tokens[0]  # the chat template already wrote BOS
        return tokens or [bos if bos >= 0 else self.eos_token]

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes of one token (``special``: include control tokens' text)."""
        size = 64
        while True:
            buffer = ctypes.create_string_buffer(size)
            length = int(
                llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, special)
            )
            if length >= 0:
                return buffer.raw[: int(length)]
            size = -int(length)  # too small: llama.cpp says how much it needs

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def generate(
        self,
        prompt: Sequence[int],
        sampling: SamplingParams,
        max_tokens: int,
        emit: Callable[[str], None],
        stop: threading.Event,
    ) -> Outcome:
        """Sample up to ``max_tokens`` tokens after ``prompt``, calling ``emit`` with text."""
        if stop.is_set():
            return Outcome("cancelled", 0, None)
        sampler = Sampler(sampling, n_vocab=self._llama.n_vocab(), penalty_window=self.context_size)
        text = TextStream(sampling.stop)
        completion_tokens = 0
        first_token_at: float | None = None
        finish_reason: FinishReason = "length"
        try:
            self._evaluate_prompt(prompt)
            while completion_tokens < max_tokens:
                if stop.is_set():
                    finish_reason = "cancelled"
                    break
                token = sampler.sample(self._llama.ctx)
                if self.is_end_of_generation(token):
                    finish_reason = "stop"
                    break
                completion_tokens += 1
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                if released := text.feed(self.piece(token)):
                    emit(released)
                if text.stopped:
                    finish_reason = "stop"
                    break
                if completion_tokens < max_tokens:
                    self._llama.eval([token])
            if released := text.finish():
                emit(released)
        except BaseException:
            self._llama.n_tokens = 0  # the context's contents are unknown: reuse none of it
            raise
        finally:
            sampler.close()
        return Outcome(finish_reason, completion_tokens, first_token_at)

    def _evaluate_prompt(self, prompt: Sequence[int]) -> None:
        """Decode the prompt, reusing the context's longest matching prefix of the last job.

        At least one prompt token is always decoded, for fresh logits to sample from.
        """
        llama = self._llama
        reuse = 0
        cached_tokens = llama.input_ids[: llama.n_tokens].tolist()
        for cached, token in zip(cached_tokens, prompt[:-1], strict=False):
            if cached != token:
                break
            reuse += 1
        memory = llama_cpp.llama_get_memory(llama.ctx)
        if not llama_cpp.llama_memory_seq_rm(memory, -1, reuse, -1):
            reuse = 0
            llama_cpp.llama_memory_clear(memory, True)
        llama.n_tokens = reuse
        llama.eval(prompt[reuse:])

    def close(self) -> None:
        self._llama.close()
