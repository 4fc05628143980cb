"""``/v1/responses`` on the public port, behind the same API-key check as the rest of the
OpenAI-compatible API. Generation goes through the one submission path (buffered, balanced,
cancelled, failed over like chat completions); SQL is read before a job is submitted and
written once its response is done, never while tokens flow."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from quart import Blueprint, Response, request

from control_plane import json_bodies, server_sent_events
from control_plane.db.response_store import ResponseRecord, ResponseStore
from control_plane.errors import OpenAIError, invalid_request
from control_plane.inference.callers import current_caller, submit_for_caller
from control_plane.inference.responses_api.conversation import (
    calls_made,
    conversation_json,
    conversation_messages,
)
from control_plane.inference.responses_api.generation import ResponseRun, Save, collect
from control_plane.inference.responses_api.ids import new_id
from control_plane.inference.responses_api.input_items import read_input
from control_plane.inference.responses_api.item_list import item_list
from control_plane.inference.responses_api.requests import ResponsesCall, parse_responses_request
from control_plane.inference.responses_api.streaming import stream_response
from control_plane.serving.relay import at_hand
from control_plane.state import ControlPlane, current_control_plane
from paddler.protocol import ChatMessage, GenerationRequest

responses_api = Blueprint("responses_api", __name__)


@responses_api.post("/v1/responses")
async def create_response() -> Response:
    call = parse_responses_request(await request.get_data(cache=False))
    state = current_control_plane()
    owner = current_caller().owner
    store = _store(state)
    earlier: tuple[ChatMessage, ...] = ()
    if call.previous_response_id is not None:
        previous = await store.get(call.previous_response_id, owner)
        if previous is None:
            raise invalid_request(
                f"Previous response with id '{call.previous_response_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        earlier = conversation_messages(previous.conversation)
    given = read_input(call.input, calls_made(earlier))
    conversation = (*earlier, *given.messages)
    save: Save | None = None
    if call.store:

        async def save(body: dict[str, Any], answer: ChatMessage) -> None:
            await store.save(
                body["id"],
                owner,
                conversation=conversation_json((*conversation, answer)),
                input_items=list(given.items),
                body=body,
            )

    run = ResponseRun(call, new_id("resp"), int(time.time()), save)
    job, updates = submit_for_caller(
        state, call.model, _job_request(call, conversation), user=call.user
    )
    if call.stream:
        stream = stream_response(state, run, job, updates)
        return server_sent_events.streaming_response(stream, ready=partial(at_hand, job))
    try:
        return _json(await collect(run, updates))
    finally:
        state.scheduler.withdraw(job, "client_disconnected")


@responses_api.get("/v1/responses/<response_id>")
async def get_response(response_id: str) -> Response:
    return _json((await _stored(response_id)).body)


@responses_api.delete("/v1/responses/<response_id>")
async def delete_response(response_id: str) -> Response:
    state = current_control_plane()
    if not await _store(state).delete(response_id, current_caller().owner):
        raise _not_found(response_id)
    return _json({"id": response_id, "object": "response", "deleted": True})


@responses_api.get("/v1/responses/<response_id>/input_items")
async def list_input_items(response_id: str) -> Response:
    return _json(item_list((await _stored(response_id)).input_items, request.args))


def _job_request(call: ResponsesCall, conversation: tuple[ChatMessage, ...]) -> GenerationRequest:
    """The instructions come first, as a system message; they are not stored with the
    conversation, so a continuation has only its own."""
    instructions = (
        (ChatMessage(role="system", content=call.instructions),) if call.instructions else ()
    )
    return GenerationRequest(
        kind="chat",
        messages=(*instructions, *conversation),
        sampling=call.sampling,
        tools=call.tools,
        tool_choice=call.tool_choice,
        parallel_tool_calls=call.parallel_tool_calls,
    )


async def _stored(response_id: str) -> ResponseRecord:
    """The stored response the caller's key made, else 404."""
    state = current_control_plane()
    record = await _store(state).get(response_id, current_caller().owner)
    if record is None:
        raise _not_found(response_id)
    return record


def _store(state: ControlPlane) -> ResponseStore:
    return ResponseStore(state.store.engine, retention=state.settings.responses_retention)


def _not_found(response_id: str) -> OpenAIError:
    return OpenAIError(
        404, f"No response found with id '{response_id}'.", param="response_id", code="not_found"
    )


def _json(body: dict[str, Any]) -> Response:
    return json_bodies.json_response(body)
