"""One decoding step's batch: which sequences' tokens go in, and writing them for llama.cpp."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.engine.sequence import Sequence
from agent.engine.slots import SlotPool

__all__ = ["BatchEntry", "fill_batch", "plan_batch"]


@dataclass(frozen=True)
class BatchEntry:
    """A run of one sequence's tokens in the batch being built."""

    sequence: Sequence
    tokens: list[int]
    wants_logits: bool


def plan_batch(active: list[Sequence], budget: int, *, prefill: bool) -> list[BatchEntry]:
    """Every generating sequence's next token, then chunks of prompts (if ``prefill``), within
    ``budget`` tokens."""
    entries: list[BatchEntry] = []
    for sequence in active:
        if sequence.next_token is not None and budget > 0:
            entries.append(BatchEntry(sequence, [sequence.next_token], True))
            budget -= 1
    if prefill:
        for sequence in active:
            if budget <= 0:
                break
            if sequence.prefilling:
                chunk = sequence.prompt[sequence.prefilled : sequence.prefilled + budget]
                done = sequence.prefilled + len(chunk) == len(sequence.prompt)
                entries.append(BatchEntry(sequence, chunk, done))
                budget -= len(chunk)
    # in sequence order: llama.cpp splits a batch whose sequences come out of order
    # into more micro-batches when each slot has its own cells (~20% slower at 4 slots)
    entries.sort(key=lambda entry: entry.sequence.seq_id)
    return entries


def fill_batch(
    batch: Any, entries: list[BatchEntry], slots: SlotPool
) -> list[tuple[BatchEntry, int]]:
    """Write ``entries`` into the llama.cpp ``batch``, each token placed after its slot's
    cached ones; returns the entries that want logits, with the index of their last token."""
    index = 0
    outputs: list[tuple[BatchEntry, int]] = []
    for entry in entries:
        position = len(slots[entry.sequence.seq_id].tokens)
        for offset, token in enumerate(entry.tokens):
            batch.token[index] = token
            batch.pos[index] = position + offset
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = entry.sequence.seq_id
            batch.logits[index] = False
            index += 1
        if entry.wants_logits:
            batch.logits[index - 1] = True
            outputs.append((entry, index - 1))
    batch.n_tokens = index
    return outputs
