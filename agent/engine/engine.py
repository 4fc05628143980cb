"""The agent's inference engine: the asyncio face of the continuous-batching decoder.

The model is loaded once; :class:`~agent.engine.decoder.Decoder` runs every slot's sequence in one
llama.cpp context on a thread of its own. Here requests are turned into token prompts and
sampler chains (off the event loop), checked against the context, and their text and
results are carried back to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.engine.cpu_path import choose_cpu_path
from agent.engine.decoder import Decoder
from agent.engine.detokenizer import TextStream
from agent.engine.errors import EngineError
from agent.engine.model import Model
from agent.engine.sampler import Sampler
from agent.engine.sequence import Outcome, Sequence
from paddler.chat_template import ChatTemplate, ChatTemplateError, MessagesRejected
from paddler.protocol import (
    CONTEXT_LENGTH_EXCEEDED,
    ENGINE_FAILURE,
    INVALID_MESSAGES,
    NO_FREE_SLOT,
    CpuPath,
    CpuRepack,
    EngineStats,
    FinishReason,
    GenerationRequest,
    Usage,
)

__all__ = ["Engine", "EngineError", "GenerationResult"]

logger = logging.getLogger("paddler.agent.engine")


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
        self.issues: tuple[str, ...] = ()
        self._slots_total = slots
        self._busy = 0
        self._model: Model | None = None
        self._decoder: Decoder | None = None
        self._template = ChatTemplate.chatml()
        self._stats_mark = (time.monotonic(), 0)
        self._mailboxes: dict[asyncio.AbstractEventLoop, _Mailbox] = {}

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
            self._template = self._chat_template(model)

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

    def _chat_template(self, model: Model) -> ChatTemplate:
        """The override if it compiles, else the model's own template, else ChatML."""
        special = {
            "bos_token": model.special_token_text(model.bos_token),
            "eos_token": model.special_token_text(model.eos_token),
        }
        issues: list[str] = []
        for origin, source in (
            ("the configured chat template", self.chat_template_override),
            ("the model's chat template", model.chat_template),
        ):
            if source is None:
                continue
            try:
                template = ChatTemplate(source, **special)
            except ChatTemplateError as error:
                logger.warning("%s does not compile: %s", origin, error)
                issues.append(f"{origin} does not compile: {error}")
                continue
            self.issues = tuple(issues)
            return template
        logger.info("no usable chat template: using ChatML")
        self.issues = (*issues, "using the ChatML chat template") if issues else ()
        return ChatTemplate.chatml()

    async def generate(
        self,
        request: GenerationRequest,
        on_text: Callable[[str], None],
        stop: threading.Event,
    ) -> GenerationResult:
        """Serve ``request``, calling ``on_text`` (on the loop) as text is released.

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
                self._sequence, request, on_text, stop, loop, finished
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

    def _release_slot(self, _: asyncio.Future[Outcome]) -> None:
        self._busy -= 1

    def _sequence(
        self,
        request: GenerationRequest,
        on_text: Callable[[str], None],
        stop: threading.Event,
        loop: asyncio.AbstractEventLoop,
        finished: asyncio.Future[Outcome],
    ) -> Sequence:
        """Prompt tokens, limits and sampler for ``request`` (on a worker thread)."""
        model = self._model
        assert model is not None
        prompt = model.tokenize(self._prompt_text(request))
        max_tokens = self._max_tokens(len(prompt), request.sampling.max_tokens)
        sampler = Sampler(request.sampling, vocab=model.vocab, n_vocab=model.n_vocab)

        mailbox = self._mailboxes.setdefault(loop, _Mailbox(loop))

        def emit(text: str) -> None:
            mailbox.post(on_text, text)

        def finish(outcome: Outcome | BaseException) -> None:
            mailbox.post(_settle, finished, outcome)

        return Sequence(
            prompt=prompt,
            max_tokens=max_tokens,
            sampler=sampler,
            emit=emit,
            finish=finish,
            stop=stop,
            text=TextStream(request.sampling.stop),
        )

    def _flush_mailboxes(self) -> None:
        for mailbox in list(self._mailboxes.values()):
            mailbox.flush()

    def _prompt_text(self, request: GenerationRequest) -> str:
        if request.kind != "chat":
            return request.prompt
        try:
            return self._template.render(request.messages)
        except MessagesRejected as error:
            raise EngineError(
                INVALID_MESSAGES, f"The model's chat template rejected the messages: {error}"
            ) from error
        except ChatTemplateError as error:
            # the template is broken rather than the request: tell the operator too
            logger.warning("the chat template failed to render: %s", error)
            self.issues = (*self.issues, f"the chat template failed to render: {error}")[-3:]
            raise EngineError(
                INVALID_MESSAGES, f"The chat template could not render the messages: {error}"
            ) from error

    def _max_tokens(self, prompt_tokens: int, requested: int | None) -> int:
        room = self.context_size - prompt_tokens
        if requested is None:
            if room < 1:
                raise EngineError(
                    CONTEXT_LENGTH_EXCEEDED,
                    f"The prompt has {prompt_tokens} tokens, which leaves no room to generate "
                    f"any in the context of {self.context_size} tokens.",
                )
            return room
        if requested > room:
            raise EngineError(
                CONTEXT_LENGTH_EXCEEDED,
                f"The prompt has {prompt_tokens} tokens and max_tokens is {requested}: "
                f"{prompt_tokens + requested} tokens do not fit in the context of "
                f"{self.context_size} tokens.",
            )
        return requested

    def stats(self) -> EngineStats:
        """Engine figures for the agent's status; tokens/s is since the previous call."""
        decoder = self._decoder
        if decoder is None:
            return EngineStats()
        counters = decoder.counters
        now = time.monotonic()
        since, generated_then = self._stats_mark
        self._stats_mark = (now, counters.generated_tokens)
        elapsed = now - since
        return EngineStats(
            tokens_per_second=(
                (counters.generated_tokens - generated_then) / elapsed if elapsed > 0 else 0.0
            ),
            active_sequences=decoder.active_sequences,
            kv_cells_used=decoder.kv_cells_used,
            kv_cells_total=decoder.kv_cells_total,
            prompt_cache_hit_rate=(
                counters.cached_tokens / counters.prompt_tokens if counters.prompt_tokens else None
            ),
        )

    def close(self) -> None:
        """Stop all sequences and free the context and the model."""
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        if self._model is not None:
            self._model.close()
            self._model = None


class _Mailbox:
    """Carries the decoder thread's callbacks to one event loop: one wake-up per step."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[tuple[Callable[..., None], tuple[object, ...]]] = []

    def post(self, callback: Callable[..., None], *args: object) -> None:
        with self._lock:
            self._pending.append((callback, args))

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if pending:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                self._loop.call_soon_threadsafe(_run_all, pending)


def _run_all(callbacks: list[tuple[Callable[..., None], tuple[object, ...]]]) -> None:
    for callback, args in callbacks:
        try:
            callback(*args)
        except Exception:  # one failing callback must not keep the others' results back
            logger.exception("a generation callback failed")


def _settle(future: asyncio.Future[Outcome], outcome: Outcome | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
