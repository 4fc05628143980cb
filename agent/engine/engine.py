"""The agent's inference engine: the asyncio face of the continuous-batching decoder.

The model is loaded once; :class:`~agent.engine.decoder.Decoder` runs every slot's sequence in one
llama.cpp context on a thread of its own. Here requests are prepared off the event loop
(:mod:`agent.engine.request_preparation`), handed to the decoder, and their text and results
carried back to the loop (:mod:`agent.engine.mailbox`).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.chat_format import TemplateFormat
from agent.engine.cpu_path import choose_cpu_path
from agent.engine.decoder import Decoder
from agent.engine.detokenizer import TextStream
from agent.engine.errors import EngineError
from agent.engine.logprobs import LogprobRecorder
from agent.engine.mailbox import Mailbox, settle
from agent.engine.model import Model
from agent.engine.prefix_summary import request_digests, slot_prefixes
from agent.engine.prompt_renderer import PromptRenderer
from agent.engine.request_preparation import prepare
from agent.engine.sequence import Outcome, Sequence
from agent.engine.stats import StatsReader
from paddler.chat_template import ChatTemplate
from paddler.protocol import (
    ENGINE_FAILURE,
    NO_FREE_SLOT,
    CpuPath,
    CpuRepack,
    EngineStats,
    FinishReason,
    GenerationRequest,
    SlotPrefixes,
    TokenLogprob,
    Usage,
)

__all__ = ["Engine", "EngineError", "GenerationResult"]


@dataclass(frozen=True)
class GenerationResult:
    finish_reason: FinishReason
    usage: Usage
    seconds_to_first_token: float | None
    seconds_total: float


class Engine:
    """Serves up to ``slots`` requests at once from one model and one context.

    ``context_size`` is each slot's room for prompt plus completion. ``batch_size`` caps the
    tokens decoded per step. ``kv_size`` overcommits: all slots share that many KV cells
    instead of owning ``context_size`` each. ``prompt_cache`` reuses a slot's KV for a
    prompt that starts the way its previous one did.
    """

    def __init__(
        self,
        model_path: Path,
        slots: int,
        context_size: int = 2048,
        threads: int | None = None,
        *,
        batch_size: int = 512,
        kv_size: int | None = None,
        prompt_cache: bool = True,
        chat_template: str | None = None,
        cpu_repack: CpuRepack = "auto",
    ) -> None:
        if slots < 1:
            raise ValueError(f"an engine needs at least one slot, not {slots}")
        self.model_path = Path(model_path)
        self.context_size = context_size
        self.threads = threads or os.cpu_count() or 1
        self.batch_size = batch_size
        self.kv_size = kv_size
        self.prompt_cache = prompt_cache
        self.cpu_repack: CpuRepack = cpu_repack
        self.chat_template_override = chat_template
        self._slots_total = slots
        self._busy = 0
        self._model: Model | None = None
        self._decoder: Decoder | None = None
        self._prompts = PromptRenderer(ChatTemplate.chatml())
        self._stats = StatsReader()
        self._mailboxes: dict[asyncio.AbstractEventLoop, Mailbox] = {}

    @property
    def model_name(self) -> str:
        return self.model_path.stem

    @property
    def slots_total(self) -> int:
        return self._slots_total

    @property
    def slots_busy(self) -> int:
        return self._busy

    @property
    def issues(self) -> tuple[str, ...]:
        """What is wrong with the chat template, for the operator."""
        return self._prompts.issues

    @property
    def cpu_path(self) -> CpuPath:
        """How the model runs on this CPU; its weights' buffer types once it is loaded."""
        if self._model is not None and self._model.cpu_path is not None:
            return self._model.cpu_path
        return choose_cpu_path(self.cpu_repack)

    async def load(self) -> None:
        """Load the model and create the context, off the event loop. Idempotent."""
        if self._decoder is None:
            model, self._decoder = await asyncio.to_thread(self._load)
            self._model = model
            self._prompts = PromptRenderer.for_model(model, self.chat_template_override)

    def _load(self) -> tuple[Model, Decoder]:
        model = Model.load(self.model_path, cpu_repack=self.cpu_repack)
        try:
            decoder = Decoder(
                model,
                slots=self._slots_total,
                context_size=self.context_size,
                threads=self.threads,
                batch_size=self.batch_size,
                kv_size=self.kv_size,
                prompt_cache=self.prompt_cache,
                after_step=self._flush_mailboxes,
            )
        except BaseException:
            model.close()
            raise
        return model, decoder

    async def generate(
        self,
        request: GenerationRequest,
        on_text: Callable[[str], None],
        stop: threading.Event,
        *,
        on_logprobs: Callable[[tuple[TokenLogprob, ...]], None] | None = None,
    ) -> GenerationResult:
        """Serve ``request``, calling ``on_text`` (on the loop) as text is released, and
        ``on_logprobs`` before it with the log probabilities of the tokens that text came from
        (when the request asked for them).

        Setting ``stop`` ends the job before its next token ("cancelled"); so does cancelling
        the awaiting task. Its slot is busy until the decoder has let the sequence go.
        """
        started = time.perf_counter()
        if self._decoder is None:
            raise EngineError(ENGINE_FAILURE, "the model is not loaded")
        if self._busy >= self._slots_total:
            raise EngineError(NO_FREE_SLOT, f"all {self._slots_total} slots are busy")
        self._busy += 1
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[Outcome] = loop.create_future()
        try:
            sequence = await asyncio.to_thread(
                self._sequence, request, on_text, on_logprobs, stop, loop, finished
            )
            self._decoder.submit(sequence)
        except BaseException:
            self._busy -= 1
            raise
        # registered before anyone awaits it, so the slot is free when the awaiter resumes
        finished.add_done_callback(self._release_slot)
        try:
            outcome = await asyncio.shield(finished)
        except asyncio.CancelledError:
            stop.set()
            raise
        return GenerationResult(
            finish_reason=outcome.finish_reason,
            usage=Usage(
                prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens,
                cached_tokens=outcome.cached_tokens,
            ),
            seconds_to_first_token=(
                None if outcome.first_token_at is None else outcome.first_token_at - started
            ),
            seconds_total=time.perf_counter() - started,
        )

    @property
    def chat_format(self) -> TemplateFormat:
        """What the chat template says about tools and thoughts (jobs parse output by it)."""
        return self._prompts.format

    def _release_slot(self, _: asyncio.Future[Outcome]) -> None:
        self._busy -= 1

    def _sequence(
        self,
        request: GenerationRequest,
        on_text: Callable[[str], None],
        on_logprobs: Callable[[tuple[TokenLogprob, ...]], None] | None,
        stop: threading.Event,
        loop: asyncio.AbstractEventLoop,
        finished: asyncio.Future[Outcome],
    ) -> Sequence:
        """``request`` as the decoder runs it, reporting to ``loop`` (on a worker thread)."""
        model = self._model
        assert model is not None
        prepared = prepare(
            request, model=model, prompts=self._prompts, context_size=self.context_size
        )
        mailbox = self._mailboxes.setdefault(loop, Mailbox(loop))

        def emit(text: str) -> None:
            mailbox.post(on_text, text)

        def emit_logprobs(logprobs: tuple[TokenLogprob, ...]) -> None:
            assert on_logprobs is not None
            mailbox.post(on_logprobs, logprobs)

        def finish(outcome: Outcome | BaseException) -> None:
            mailbox.post(settle, finished, outcome)

        return Sequence(
            prompt=prepared.prompt,
            max_tokens=prepared.max_tokens,
            sampler=prepared.sampler,
            emit=emit,
            emit_logprobs=None if on_logprobs is None else emit_logprobs,
            logprobs=(
                None
                if on_logprobs is None or request.logprobs is None
                else LogprobRecorder(model, request.logprobs)
            ),
            preserved_tokens=prepared.preserved_tokens,
            prefixes=request_digests(request) if self.prompt_cache else (),
            finish=finish,
            stop=stop,
            text=TextStream(request.sampling.stop),
        )

    def _flush_mailboxes(self) -> None:
        for mailbox in list(self._mailboxes.values()):
            mailbox.flush()

    def stats(self) -> EngineStats:
        """Engine figures for the agent's status; tokens/s is since the previous call."""
        return self._stats.read(self._decoder)

    def slot_prefixes(self) -> SlotPrefixes | None:
        """What the slots' caches hold, for the status (None: no model, or no prompt cache)."""
        if self._decoder is None or not self.prompt_cache:
            return None
        return slot_prefixes(self._decoder.held_prefixes())

    def close(self) -> None:
        """Stop all sequences and free the context and the model."""
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        if self._model is not None:
            self._model.close()
            self._model = None
