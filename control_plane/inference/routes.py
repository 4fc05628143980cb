"""The public OpenAI-compatible API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from quart import Blueprint, Response, request

from control_plane import errors, json_bodies, server_sent_events, serving_errors
from control_plane.inference import openai_objects
from control_plane.inference.callers import current_caller, submit_for_caller
from control_plane.inference.chat_chunks import ChatStream
from control_plane.inference.chat_objects import chat_completion
from control_plane.inference.chat_requests import InferenceCall
from control_plane.inference.embedding_requests import parse_embeddings
from control_plane.inference.generated_output import GeneratedOutput
from control_plane.inference.openai_objects import Header
from control_plane.inference.text_objects import TextStream, text_completion
from control_plane.serving.jobs import InferenceJob
from control_plane.serving.relay import KeepAlive, Update, Waiting
from control_plane.state import ControlPlane, current_control_plane
from paddler.protocol import Done, Embeddings, Token

logger = logging.getLogger("paddler.inference")

inference_api = Blueprint("inference_api", __name__)


@inference_api.get("/health")
async def health() -> dict[str, Any]:
    return {"status": "ok"}


@inference_api.get("/v1/models")
async def list_models() -> dict[str, Any]:
    """The models served, as far as the caller's key may use them."""
    pools = current_control_plane().pools
    key = current_caller().key
    allowed = [name for name in pools if key is None or key.models is None or name in key.models]
    created = {name: int(pools[name].created_at.timestamp()) for name in allowed}
    return openai_objects.models_list(sorted(allowed), created)


# A POST to these two never reaches Quart: ``direct_routes.DirectRoutes`` answers it in front of
# the app, with ``collect_completion`` and ``stream_completion`` below. The rules stay registered
# so that Quart still answers what is not a POST: 405 naming the allowed methods, CORS preflights.
@inference_api.post("/v1/chat/completions")
@inference_api.post("/v1/completions")
async def served_directly() -> Response:
    raise RuntimeError("a POST to this route is served by DirectRoutes, in front of Quart")


@inference_api.post("/v1/embeddings")
async def embeddings() -> Response:
    call = parse_embeddings(await request.get_data(cache=False))
    state = current_control_plane()
    job, updates = submit_for_caller(state, call.model, call.request)
    try:
        async for update in updates:
            if isinstance(update, Embeddings):
                body = openai_objects.embedding_list(
                    call.model,
                    update.vectors,
                    update.prompt_tokens,
                    encoding_format=call.encoding_format,
                )
                return json_bodies.json_response(body)
    except errors.OpenAIError as error:
        if error.code == "buffer_timeout" and not state.fleet.load(call.model).serves_embeddings:
            raise serving_errors.buffer_timeout(
                state.settings.buffer_timeout,
                hint="No agent of this model serves embeddings (agent flag --embeddings).",
            ) from error
        raise
    finally:
        state.scheduler.withdraw(job, "client_disconnected")
    raise serving_errors.agent_lost("the agent stopped without answering the request")


def _expected(seconds: float | None) -> str:
    """The expected wait of a queued comment, while a cold start is under way."""
    return "" if seconds is None else f" expected_wait={seconds:.0f}s"


def queued_comment(update: Waiting) -> bytes:
    """The comment that tells a waiting stream (a completion's or a response's) where it stands:
    its place, how long it waited, and ``expected_wait`` while a cold start is under way."""
    return server_sent_events.comment(
        f"queued position={update.position} waited={update.seconds_waited:.0f}s"
        + _expected(update.expected_wait)
    )


async def collect_completion(call: InferenceCall, updates: AsyncIterator[Update]) -> dict[str, Any]:
    """The body of a completion that is not streamed, once ``updates`` end it."""
    output = GeneratedOutput()
    logprobs = call.request.logprobs is not None
    async for update in updates:
        if isinstance(update, Token):
            output.add(update)
        elif isinstance(update, Done):
            header = Header.new(call.request.kind, call.model)
            whole = chat_completion if call.request.kind == "chat" else text_completion
            return whole(header, output, update, logprobs=logprobs)
    raise serving_errors.agent_lost("the agent stopped without finishing the request")


def _answer_stream(call: InferenceCall) -> ChatStream | TextStream:
    kind = ChatStream if call.request.kind == "chat" else TextStream
    return kind(
        Header.new(call.request.kind, call.model),
        logprobs=call.request.logprobs is not None,
        include_usage=call.include_usage,
    )


async def stream_completion(
    state: ControlPlane, call: InferenceCall, job: InferenceJob, updates: AsyncIterator[Update]
) -> AsyncIterator[bytes]:
    """The events of a streamed completion, until ``updates`` end it; an error after the first
    event is the last event. Closing it withdraws ``job``."""
    answer = _answer_stream(call)
    opened = False
    try:
        if job.waiting:
            position = state.scheduler.position(job)
            expected = _expected(state.autoscaling.expected_wait(call.model))
            yield server_sent_events.comment(f"queued position={position}{expected}")
        async for update in updates:
            if isinstance(update, Waiting):
                yield queued_comment(update)
                continue
            if isinstance(update, KeepAlive):
                yield server_sent_events.comment("keep-alive")
                continue
            if not opened:
                opened = True
                for chunk in answer.opening():
                    yield openai_objects.sse_event(chunk)
            if isinstance(update, Token):
                for chunk in answer.piece(update):
                    yield openai_objects.sse_event(chunk)
            elif isinstance(update, Done):
                for chunk in answer.ending(update):
                    yield openai_objects.sse_event(chunk)
                break
    except errors.OpenAIError as error:
        logger.info("stream of job %s ended with %s", job.id, error.code)
        yield openai_objects.sse_event(error.body())
    finally:
        state.scheduler.withdraw(job, "client_disconnected")
    yield openai_objects.sse_event(openai_objects.DONE)
