"""The agent's inference engine: one llama.cpp context per slot, each on a thread of its own.

A simple engine: slots share nothing but the model file, so ``slots`` jobs run side by side,
each with ``threads`` CPU threads. The interface is what the agent runner relies on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from agent.chat_template import ChatTemplate, ChatTemplateError
from agent.errors import EngineError
from agent.slot import Outcome, Slot
from paddler.protocol import (
    CONTEXT_LENGTH_EXCEEDED,
    ENGINE_FAILURE,
    INVALID_MESSAGES,
    NO_FREE_SLOT,
    FinishReason,
    GenerationRequest,
    Usage,
)

__all__ = ["EngineError", "GenerationResult", "SimpleEngine"]

logger = logging.getLogger("paddler.agent.engine")


@dataclass(frozen=True)
class GenerationResult:
    finish_reason: FinishReason
    usage: Usage
    seconds_to_first_token: float | None
    seconds_total: float


class SimpleEngine:
    def __init__(
        self, model_path: Path, slots: int, context_size: int = 2048, threads: int | None = None
    ) -> None:
        if slots < 1:
            raise ValueError(f"an engine needs at least one slot, not {slots}")
        self.model_path = Path(model_path)
        self.context_size = context_size
        self.threads = threads or max(1, (os.cpu_count() or 1) // slots)
        self._slots_total = slots
        self._slots: list[Slot] = []
        self._threads: list[ThreadPoolExecutor] = []
        self._free: list[int] = []
        self._template = ChatTemplate.chatml()

    @property
    def model_name(self) -> str:
        return self.model_path.stem

    @property
    def slots_total(self) -> int:
        return self._slots_total

    @property
    def slots_busy(self) -> int:
        return len(self._slots) - len(self._free)

    async def load(self) -> None:
        """Load the model once per slot, off the event loop. Does nothing if loaded."""
        if self._slots:
            return
        # One after another: llama-cpp-python points the process's stdout and stderr at
        # /dev/null while it loads a model quietly, which concurrent loads would garble.
        self._slots = await asyncio.to_thread(self._load_slots)
        self._threads = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"paddler-slot-{index}")
            for index in range(len(self._slots))
        ]
        self._free = list(reversed(range(len(self._slots))))
        self._template = self._chat_template(self._slots[0])

    def _load_slots(self) -> list[Slot]:
        slots: list[Slot] = []
        try:
            for _ in range(self._slots_total):
                slots.append(
                    Slot.load(self.model_path, context_size=self.context_size, threads=self.threads)
                )
        except BaseException:
            for slot in slots:
                slot.close()
            raise
        return slots

    @staticmethod
    def _chat_template(slot: Slot) -> ChatTemplate:
        source = slot.metadata.get("tokenizer.chat_template")
        if not source:
            logger.info("the model has no chat template: using ChatML")
            return ChatTemplate.chatml()
        try:
            return ChatTemplate(
                source,
                bos_token=slot.special_token_text(slot.bos_token),
                eos_token=slot.special_token_text(slot.eos_token),
            )
        except ChatTemplateError as error:
            logger.warning("%s: using ChatML", error)
            return ChatTemplate.chatml()

    async def generate(
        self,
        request: GenerationRequest,
        on_text: Callable[[str], None],
        stop: threading.Event,
    ) -> GenerationResult:
        """Run ``request`` on a free slot, calling ``on_text`` (on the loop) as text arrives.

        Setting ``stop`` ends the job before its next token ("cancelled"); so does cancelling
        the awaiting task, which sets ``stop`` and frees the slot once the job has stopped.
        """
        started = time.perf_counter()
        if not self._slots:
            raise EngineError(ENGINE_FAILURE, "the model is not loaded")
        if not self._free:
            raise EngineError(NO_FREE_SLOT, f"all {self.slots_total} slots are busy")
        index = self._free.pop()
        loop = asyncio.get_running_loop()

        def emit(text: str) -> None:
            loop.call_soon_threadsafe(on_text, text)

        job = functools.partial(self._run, self._slots[index], request, emit, stop)
        future = loop.run_in_executor(self._threads[index], job)
        try:
            prompt_tokens, outcome = await asyncio.shield(future)
        finally:
            if future.done():
                self._free.append(index)
            else:
                stop.set()
                future.add_done_callback(functools.partial(self._release_abandoned, index))
        return GenerationResult(
            finish_reason=outcome.finish_reason,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=outcome.completion_tokens),
            seconds_to_first_token=(
                None if outcome.first_token_at is None else outcome.first_token_at - started
            ),
            seconds_total=time.perf_counter() - started,
        )

    def _release_abandoned(self, index: int, future: asyncio.Future[tuple[int, Outcome]]) -> None:
        if not future.cancelled() and future.exception() is not None:
            logger.warning("an abandoned job failed", exc_info=future.exception())
        if self._slots:
            self._free.append(index)

    def _run(
        self,
        slot: Slot,
        request: GenerationRequest,
        emit: Callable[[str], None],
        stop: threading.Event,
    ) -> tuple[int, Outcome]:
        """The whole job, on the slot's thread."""
        if request.kind == "chat":
            try:
                text = self._template.render(request.messages)
            except ChatTemplateError as error:
                raise EngineError(
                    INVALID_MESSAGES, f"The model's chat template rejected the messages: {error}"
                ) from error
        else:
            text = request.prompt
        prompt = slot.tokenize(text)
        max_tokens = request.sampling.max_tokens
        if max_tokens is None:
            max_tokens = self.context_size - len(prompt)
            if max_tokens < 1:
                raise EngineError(
                    CONTEXT_LENGTH_EXCEEDED,
                    f"The prompt has {len(prompt)} tokens, which leaves no room to generate "
                    f"any in the context of {self.context_size} tokens.",
                )
        elif len(prompt) + max_tokens > self.context_size:
            raise EngineError(
                CONTEXT_LENGTH_EXCEEDED,
                f"The prompt has {len(prompt)} tokens and max_tokens is {max_tokens}: "
                f"{len(prompt) + max_tokens} tokens do not fit in the context of "
                f"{self.context_size} tokens.",
            )
        return len(prompt), slot.generate(prompt, request.sampling, max_tokens, emit, stop)

    def close(self) -> None:
        """Free the models. Jobs still running are waited for (set their ``stop`` first)."""
        for executor in self._threads:
            executor.shutdown(wait=True)
        for slot in self._slots:
            slot.close()
        self._slots, self._threads, self._free = [], [], []
