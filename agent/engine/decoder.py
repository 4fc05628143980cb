"""Continuous batching: one llama.cpp context, one sequence id per slot, one batch per step.

Everything here runs on the decoder's own thread. Each step decodes a single batch holding
the next token of every generating sequence plus chunks of prompts still being prefilled,
within ``batch_size`` tokens, so a long prompt never stalls the streams already running.
Sequences join and leave between steps. A slot keeps its last sequence's KV, and a new
request goes to the free slot that shares the longest prefix with its prompt.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import llama_cpp

from agent.engine.batch import BatchEntry, fill_batch, plan_batch
from agent.engine.errors import EngineError
from agent.engine.model import Model
from agent.engine.sequence import Sequence
from agent.engine.slots import SlotPool
from paddler.protocol import ENGINE_FAILURE, KV_CACHE_FULL, FinishReason

__all__ = ["Decoder", "DecoderCounters"]

logger = logging.getLogger("paddler.agent.decoder")

DECODE_NO_KV_ROOM = 1  # llama_decode's "could not find a KV slot for the batch"


@dataclass
class DecoderCounters:
    """Running totals, read (without locking: plain ints) by the engine's status report."""

    generated_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0


class Decoder:
    def __init__(
        self,
        model: Model,
        *,
        slots: int,
        context_size: int,
        threads: int,
        batch_size: int,
        kv_size: int | None = None,
        prompt_cache: bool = True,
        after_step: Callable[[], None] = lambda: None,
    ) -> None:
        self.model = model
        self._after_step = after_step
        self.batch_size = batch_size
        self.prompt_cache = prompt_cache
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = kv_size or slots * context_size
        params.n_batch = params.n_ubatch = batch_size
        params.n_seq_max = slots
        params.n_threads = params.n_threads_batch = threads
        # Own KV cells per slot (a sequence's attention never spans the others' cells, so a
        # prompt decodes to the same tokens alone or in a batch), unless the operator
        # overcommits one shared pool of cells.
        params.kv_unified = kv_size is not None
        params.no_perf = True
        self._context = llama_cpp.llama_init_from_model(model.pointer, params)
        if not self._context:
            raise EngineError(ENGINE_FAILURE, "llama.cpp could not create a context")
        self._memory = llama_cpp.llama_get_memory(self._context)
        self._batch = llama_cpp.llama_batch_init(batch_size, 0, 1)
        self.kv_cells_total = int(llama_cpp.llama_n_ctx(self._context))
        self.counters = DecoderCounters()
        self._slots = SlotPool(slots, prompt_cache=prompt_cache)
        self._active: list[Sequence] = []
        self._waiting: collections.deque[Sequence] = collections.deque()
        self._inbox: collections.deque[Sequence] = collections.deque()
        self._wakeup = threading.Condition()
        self._closing = False
        self._prefill_paused = False
        self._thread = threading.Thread(target=self._run, name="paddler-decoder", daemon=True)
        self._thread.start()

    # -- called from other threads --------------------------------------------------------

    def submit(self, sequence: Sequence) -> None:
        with self._wakeup:
            if self._closing:
                raise EngineError(ENGINE_FAILURE, "the engine is shutting down")
            self._inbox.append(sequence)
            self._wakeup.notify()

    @property
    def active_sequences(self) -> int:
        return len(self._active)

    @property
    def kv_cells_used(self) -> int:
        return self._slots.cells_used

    def held_prefixes(self) -> list[tuple[str, ...]]:
        """Each slot's prefix hashes: what its KV holds for the next request."""
        return self._slots.held_prefixes() if self.prompt_cache else []

    def close(self) -> None:
        """Stop every sequence ("cancelled"), end the thread and free the context."""
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        self._thread.join()
        llama_cpp.llama_batch_free(self._batch)
        llama_cpp.llama_free(self._context)

    # -- the decoder thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not (self._closing or self._inbox or self._active):
                    self._wakeup.wait()
                if self._closing:
                    break
                self._waiting.extend(self._inbox)
                self._inbox.clear()
            try:
                self._admit()
                self._end_stopped()
                self._step()
            except Exception as error:  # never let one bad step kill the thread
                logger.exception("decoding step failed")
                self._fail_all(EngineError(ENGINE_FAILURE, f"the engine failed: {error}"))
            self._after_step()
        for sequence in [*self._active, *self._waiting, *self._inbox]:
            self._end(sequence, "cancelled")
        self._after_step()

    def _admit(self) -> None:
        while self._waiting and self._slots.any_free():
            sequence = self._waiting.popleft()
            if sequence.stop.is_set():
                sequence.sampler.close()
                sequence.finish(sequence.outcome("cancelled"))
                continue
            slot = self._slots.pick(sequence.prompt)
            reuse = slot.shared_prefix(sequence.prompt[:-1]) if self.prompt_cache else 0
            if not llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, reuse, -1):
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
                reuse = 0
            del slot.tokens[reuse:]
            self._slots.occupy(slot, sequence.prefixes)
            sequence.seq_id = slot.seq_id
            sequence.prefilled = sequence.cached_tokens = reuse
            self.counters.prompt_tokens += len(sequence.prompt)
            self.counters.cached_tokens += reuse
            self._active.append(sequence)

    def _end_stopped(self) -> None:
        for sequence in [s for s in self._active if s.stop.is_set()]:
            self._end(sequence, "cancelled")

    def _step(self) -> None:
        entries = plan_batch(self._active, self.batch_size, prefill=not self._prefill_paused)
        if not entries:
            return
        outputs = fill_batch(self._batch, entries, self._slots)
        result = int(llama_cpp.llama_decode(self._context, self._batch))
        if result != 0:
            self._recover(entries, result)
            return
        for entry in entries:
            slot = self._slots[entry.sequence.seq_id]
            slot.tokens.extend(entry.tokens)
            if entry.sequence.prefilling:
                entry.sequence.prefilled += len(entry.tokens)
            else:
                entry.sequence.next_token = None
        for entry, index in outputs:
            self._sample(entry.sequence, index)

    def _sample(self, sequence: Sequence, index: int) -> None:
        try:
            recorder = sequence.logprobs
            distribution = None if recorder is None else recorder.read(self._context, index)
            token = sequence.sampler.sample(self._context, index)
            if self.model.is_end_of_generation(token):
                self._end(sequence, "stop")
                return
            self.counters.generated_tokens += 1
            piece = self.model.piece(token, special=token in sequence.preserved_tokens)
            sequence.accept(
                piece, None if distribution is None else distribution.report(token, piece)
            )
        except Exception as error:
            logger.exception("sampling failed")
            self._end(sequence, EngineError(ENGINE_FAILURE, f"sampling failed: {error}"))
            return
        if sequence.text.stopped:
            self._end(sequence, "stop")
        elif sequence.completion_tokens >= sequence.max_tokens:
            self._end(sequence, "length")
        else:
            sequence.next_token = token

    def _recover(self, entries: list[BatchEntry], result: int) -> None:
        """A batch failed to decode: undo it, then make room or give up on someone."""
        for entry in entries:
            slot = self._slots[entry.sequence.seq_id]
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, len(slot.tokens), -1)
        if result != DECODE_NO_KV_ROOM:
            logger.error("llama_decode failed with %d: ending the batch's sequences", result)
            for entry in entries:
                self._forget(entry.sequence.seq_id)
                self._end(
                    entry.sequence,
                    EngineError(ENGINE_FAILURE, f"llama.cpp failed to decode ({result})"),
                )
            return
        idle = self._slots.idle_cached()
        if idle:
            logger.info("KV cache full: dropping the prompt cache of %d idle slot(s)", len(idle))
            for slot in idle:
                self._forget(slot.seq_id)
            return
        generating = [entry for entry in entries if not entry.sequence.prefilling]
        if generating and len(generating) < len(entries):
            logger.info("KV cache full: pausing prompt prefill until a sequence finishes")
            self._prefill_paused = True
            return
        victim = max(self._active, key=lambda s: len(self._slots[s.seq_id].tokens))
        logger.warning("KV cache full: ending the sequence holding the most cells")
        self._forget(victim.seq_id)
        self._end(
            victim,
            EngineError(
                KV_CACHE_FULL,
                "The agent's context filled up while serving this request; retry later.",
            ),
        )

    def _forget(self, seq_id: int) -> None:
        llama_cpp.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
        self._slots[seq_id].tokens.clear()

    def _end(self, sequence: Sequence, reason: FinishReason | BaseException) -> None:
        """Finish a sequence: release held text, free its slot (keeping its KV), report."""
        if sequence in self._active:
            self._active.remove(sequence)
            self._slots.release(self._slots[sequence.seq_id])
            self._prefill_paused = False
        sequence.sampler.close()
        if isinstance(reason, BaseException):
            sequence.finish(reason)
            return
        sequence.release_rest()
        sequence.finish(sequence.outcome(reason))

    def _fail_all(self, error: EngineError) -> None:
        for sequence in list(self._active):
            self._forget(sequence.seq_id)
            self._end(sequence, error)
