"""The jobs an agent runs for the control plane: tokens streamed back, then ``done`` or an
error; embeddings answered in frames the control plane accepts. Each can be stopped (a
cancel, a lost connection)."""

from __future__ import annotations

import asyncio
import logging
import threading

from agent.chat_format import OutputParser, Piece, output_parser
from agent.embedding_frames import embedding_frames
from agent.engine.embedder import EmbeddingStopped
from agent.engine.engine import EngineError
from agent.served_model import ServedModel
from paddler import protocol
from paddler.logs import current_request_id

__all__ = ["Jobs", "Outbox"]

logger = logging.getLogger("paddler.agent")

Outbox = asyncio.Queue[protocol.Message]


class Jobs:
    """The running jobs by id, each on ``served``'s model as it is when the job starts."""

    def __init__(self, served: ServedModel) -> None:
        self._served = served
        self._running: dict[str, tuple[asyncio.Task[None], threading.Event]] = {}
        self.max_frame_bytes = protocol.MAX_FRAME_BYTES  # what the control plane accepts

    def __len__(self) -> int:
        return len(self._running)

    def tasks(self) -> list[asyncio.Task[None]]:
        return [task for task, _ in self._running.values()]

    def start(self, job: protocol.Job, outbox: Outbox) -> None:
        stop = threading.Event()
        task = asyncio.create_task(self._run(job, outbox, stop))
        self._running[job.job_id] = (task, stop)

    def cancel(self, job_id: str) -> None:
        running = self._running.get(job_id)
        if running is not None:
            logger.info("job %s cancelled by the control plane", job_id)
            running[1].set()

    async def finished(self) -> None:
        """Wait until no job runs."""
        while self._running:
            await asyncio.wait(self.tasks())

    async def stop_all(self) -> None:
        """Jobs of a lost connection have nobody to report to: stop them and free their slots."""
        running = list(self._running.values())
        for _, stop in running:
            stop.set()
        if running:
            await asyncio.gather(*(task for task, _ in running), return_exceptions=True)

    async def _run(self, job: protocol.Job, outbox: Outbox, stop: threading.Event) -> None:
        current_request_id.set(job.request_id)  # this task's log lines carry it
        logger.info("running job %s (%s)", job.job_id, job.request.kind)
        try:
            if isinstance(job.request, protocol.EmbeddingRequest):
                for frame in await self._embed(job.job_id, job.request, stop):
                    outbox.put_nowait(frame)
                return
            outbox.put_nowait(await self._generate(job.job_id, job.request, outbox, stop))
        except EmbeddingStopped as stopped:
            # as a stopped generation ends: the control plane retries or fails it explicitly
            logger.info("job %s %s", job.job_id, stopped)
            outbox.put_nowait(
                protocol.Done(
                    job_id=job.job_id,
                    finish_reason="cancelled",
                    usage=protocol.Usage(prompt_tokens=0, completion_tokens=0),
                )
            )
        except EngineError as error:
            logger.info("job %s ended with %s: %s", job.job_id, error.code, error.message)
            outbox.put_nowait(
                protocol.JobError(job_id=job.job_id, code=error.code, message=error.message)
            )
        except Exception as error:
            logger.exception("job %s failed", job.job_id)
            outbox.put_nowait(
                protocol.JobError(
                    job_id=job.job_id, code=protocol.ENGINE_FAILURE, message=str(error)
                )
            )
        finally:
            self._running.pop(job.job_id, None)

    async def _generate(
        self,
        job_id: str,
        request: protocol.GenerationRequest,
        outbox: Outbox,
        stop: threading.Event,
    ) -> protocol.Done:
        """Run ``request``, sending its output as it is parsed: text, thoughts, tool calls."""
        engine = self._served.engine
        frames = _TokenFrames(job_id, output_parser(request, engine.chat_format), outbox)
        result = await engine.generate(
            request,
            frames.on_text,
            stop,
            on_logprobs=None if request.logprobs is None else frames.on_logprobs,
        )
        frames.finish()
        finish_reason = result.finish_reason
        if frames.parser.calls and finish_reason == "stop":
            finish_reason = "tool_calls"
        thoughts = min(frames.parser.reasoning_pieces, result.usage.completion_tokens)
        logger.info(
            "job %s done: %s, %d tokens", job_id, finish_reason, result.usage.completion_tokens
        )
        return protocol.Done(
            job_id=job_id,
            finish_reason=finish_reason,
            usage=result.usage.model_copy(update={"reasoning_tokens": thoughts}),
            seconds_to_first_token=result.seconds_to_first_token,
            seconds_total=result.seconds_total,
        )

    async def _embed(
        self, job_id: str, request: protocol.EmbeddingRequest, stop: threading.Event
    ) -> list[protocol.EmbeddingsPart | protocol.Embeddings]:
        embeddings = self._served.embeddings
        if embeddings is None:
            raise EngineError(protocol.EMBEDDINGS_DISABLED, "this agent does not serve embeddings")
        outcome = await embeddings.embed(request.inputs, stop)
        frames = embedding_frames(
            job_id, outcome.vectors, outcome.prompt_tokens, self.max_frame_bytes
        )
        logger.info(
            "job %s done: %d embeddings in %d frame(s)", job_id, len(outcome.vectors), len(frames)
        )
        return frames


class _TokenFrames:
    """Turns one generation's released text into Token frames, through its output parser.

    A frame goes out only when there is something in it; log probabilities wait for the next
    frame (text held back by the parser, such as a possible ``<tool_c``, holds them too).
    """

    def __init__(self, job_id: str, parser: OutputParser, outbox: Outbox) -> None:
        self.parser = parser
        self._job_id = job_id
        self._outbox = outbox
        self._logprobs: list[protocol.TokenLogprob] = []

    def on_logprobs(self, logprobs: tuple[protocol.TokenLogprob, ...]) -> None:
        self._logprobs.extend(logprobs)

    def on_text(self, text: str) -> None:
        self._send(self.parser.feed(text))

    def finish(self) -> None:
        """Send what the parser held back (an unfinished call's text goes out as text)."""
        self._send(self.parser.finish(), last=True)

    def _send(self, piece: Piece, *, last: bool = False) -> None:
        if not piece and not (last and self._logprobs):
            return
        self._outbox.put_nowait(
            protocol.Token(
                job_id=self._job_id,
                text=piece.text,
                reasoning=piece.reasoning,
                tool_calls=tuple(piece.tool_calls),
                logprobs=tuple(self._logprobs),
            )
        )
        self._logprobs.clear()
