"""Text embeddings from a llama.cpp context of their own: batched, pooled, L2-normalised.

Synchronous and not thread-safe: one thread at a time
(:mod:`agent.engine.embedding_service` gives it a thread of its own). Several inputs share
one ``llama_decode`` as distinct sequences; the context's memory is cleared before each
batch, so inputs never see each other.
"""

from __future__ import annotations

import math
import os
import threading
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import llama_cpp

from agent.engine.errors import EngineError
from agent.engine.model import Model
from paddler.protocol import CONTEXT_LENGTH_EXCEEDED, ENGINE_FAILURE

__all__ = ["Embedder", "EmbedderError", "EmbeddingOutcome", "EmbeddingStopped"]

# How a GGUF names its pooling: "<architecture>.pooling_type" (llama.cpp's LLM_KV_POOLING_TYPE).
_POOLING_KEY = "{architecture}.pooling_type"
# Poolings that yield one n_embd vector per sequence; anything else (none, rank) means MEAN.
_VECTOR_POOLINGS = {
    llama_cpp.LLAMA_POOLING_TYPE_MEAN,
    llama_cpp.LLAMA_POOLING_TYPE_CLS,
    llama_cpp.LLAMA_POOLING_TYPE_LAST,
}


class EmbedderError(Exception):
    """llama.cpp could not make an embedding context for the model."""


class EmbeddingStopped(Exception):
    """The job's stop flag was set (a cancel, a shutdown, a lost connection) before its end."""


@dataclass(frozen=True)
class EmbeddingOutcome:
    vectors: list[list[float]]  # one unit-length vector per input, in input order
    prompt_tokens: int


def pooling_type(model: Model) -> int:
    """The model's own pooling when it declares one that gives a vector, else MEAN.

    Causal language models (SmolLM2, Llama) declare none: their mean token state is used.
    """
    architecture = model.metadata.get("general.architecture", "")
    declared = model.metadata.get(_POOLING_KEY.format(architecture=architecture), "")
    if declared.strip().isdigit() and int(declared) in _VECTOR_POOLINGS:
        return int(declared)
    return int(llama_cpp.LLAMA_POOLING_TYPE_MEAN)


class Embedder:
    """Embeds texts with ``model``; every input may be up to ``context_size`` tokens long."""

    def __init__(
        self,
        model: Model,
        *,
        context_size: int = 2048,
        threads: int | None = None,
        max_sequences: int = 8,
    ) -> None:
        if context_size < 1 or max_sequences < 1:
            raise ValueError("context_size and max_sequences must be at least 1")
        self.model = model
        self.context_size = context_size
        self.max_sequences = max_sequences
        self.dimensions = model.n_embd
        self.pooling = pooling_type(model)
        threads = threads or os.cpu_count() or 1
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = context_size
        # one batch is one micro-batch: pooling must see every token of a sequence at once
        params.n_batch = params.n_ubatch = context_size
        params.n_seq_max = max_sequences
        params.kv_unified = True  # any sequence may use the whole context, not a 1/n share
        params.embeddings = True
        params.pooling_type = self.pooling
        params.n_threads = params.n_threads_batch = threads
        # An input batched with others goes through kernels shaped by the whole batch, so its
        # vector differs from the same input's alone by float rounding. With flash attention the
        # gap is larger (1 - cosine ~1e-4 on SmolLM2) than without (mostly ~1e-8, at most ~2e-5).
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self._context: Any = llama_cpp.llama_init_from_model(model.pointer, params)
        if not self._context:
            raise EmbedderError(f"llama.cpp could not create an embedding context for {model.name}")
        self._memory = llama_cpp.llama_get_memory(self._context)
        self._batch = llama_cpp.llama_batch_init(context_size, 0, 1)

    def embed(self, texts: Sequence[str], stop: threading.Event | None = None) -> EmbeddingOutcome:
        """One unit vector per text, in order; raises EngineError for a text that is too long,
        and EmbeddingStopped once ``stop`` is set (checked before every batch)."""
        token_lists = [self._tokens(index, text) for index, text in enumerate(texts)]
        vectors: list[list[float]] = []
        for batch in self._batches(token_lists):
            if stop is not None and stop.is_set():
                raise EmbeddingStopped(f"stopped after {len(vectors)} of {len(texts)} embeddings")
            vectors.extend(self._embed_batch(batch))
        return EmbeddingOutcome(vectors, sum(len(tokens) for tokens in token_lists))

    def _tokens(self, index: int, text: str) -> list[int]:
        tokens = self.model.tokenize(text)
        if len(tokens) > self.context_size:
            raise EngineError(
                CONTEXT_LENGTH_EXCEEDED,
                f"input[{index}] is {len(tokens)} tokens long, but this model embeds at most "
                f"{self.context_size} tokens per input. Please shorten it.",
            )
        return tokens

    def _batches(self, token_lists: list[list[int]]) -> list[list[list[int]]]:
        """Consecutive inputs grouped so each group fits one decode: few sequences, few tokens."""
        batches: list[list[list[int]]] = []
        current: list[list[int]] = []
        used = 0
        for tokens in token_lists:
            if current and (
                len(current) == self.max_sequences or used + len(tokens) > self.context_size
            ):
                batches.append(current)
                current, used = [], 0
            current.append(tokens)
            used += len(tokens)
        if current:
            batches.append(current)
        return batches

    def _embed_batch(self, sequences: list[list[int]]) -> list[list[float]]:
        llama_cpp.llama_memory_clear(self._memory, True)
        batch = self._batch
        count = 0
        for sequence_id, tokens in enumerate(sequences):
            for position, token in enumerate(tokens):
                batch.token[count] = token
                batch.pos[count] = position
                batch.n_seq_id[count] = 1
                batch.seq_id[count][0] = sequence_id
                batch.logits[count] = True
                count += 1
        batch.n_tokens = count
        status = int(llama_cpp.llama_decode(self._context, batch))
        if status != 0:
            raise EngineError(ENGINE_FAILURE, f"llama_decode failed with status {status}")
        return [self._pooled(sequence_id) for sequence_id in range(len(sequences))]

    def _pooled(self, sequence_id: int) -> list[float]:
        pointer = llama_cpp.llama_get_embeddings_seq(self._context, sequence_id)
        if not pointer:
            raise EngineError(ENGINE_FAILURE, "llama.cpp returned no embedding for a sequence")
        return unit_vector(pointer[: self.dimensions])

    def close(self) -> None:
        if self._context is not None:
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._context)
            self._context = None


def unit_vector(values: Sequence[float]) -> list[float]:
    """``values`` scaled to length 1, as float32 numbers (so base64 float32 is lossless)."""
    norm = math.sqrt(math.fsum(value * value for value in values))
    scale = 1.0 / norm if norm > 0 else 1.0
    return array("f", (value * scale for value in values)).tolist()
