"""The hot inference routes served straight on ASGI, without Quart's per-request machinery.

``POST /v1/chat/completions`` and ``POST /v1/completions`` carry nearly all the traffic, and
Quart's request and response objects, hooks, routing and two tasks per request cost about a
third of their CPU. :class:`DirectRoutes`, in front of the inference app, answers them itself,
with the functions Quart's hooks and views use: the request id, the API key, the body limit,
CORS, rate limit headers, OpenAI-shaped errors and request counting. Every other request (other
paths and methods, preflights, websockets, lifespan) goes to the app unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from werkzeug.sansio.utils import get_host

from control_plane import errors, json_bodies, server_sent_events
from control_plane.asgi import AsgiApp, Message, Receive, Scope, Send, request_headers
from control_plane.eager import start_now
from control_plane.inference.chat_requests import (
    InferenceCall,
    parse_chat_completion,
    parse_completion,
)
from control_plane.inference.cors import cors_headers
from control_plane.inference.request_ids import REQUEST_ID_HEADER, request_id_from
from control_plane.inference.routes import collect_completion, queued_comment, stream_completion
from control_plane.inference.submission import SESSION_HEADER, submit
from control_plane.serving.jobs import InferenceJob
from control_plane.serving.relay import Update, Waiting, at_hand, unheard
from control_plane.state import ControlPlane
from control_plane.tenancy import Caller, Ticket
from paddler.logs import current_request_id

logger = logging.getLogger("paddler.inference")

Parse = Callable[[bytes], InferenceCall]
T = TypeVar("T")

# The path is also the route's label in the request metrics, as Quart's url rule is.
PARSERS: dict[str, Parse] = {
    "/v1/chat/completions": parse_chat_completion,
    "/v1/completions": parse_completion,
}

JSON = "application/json"
EVENT_STREAM = "text/event-stream; charset=utf-8"

# The request headers a direct route reads, as ASGI names them (lowercase).
_REQUEST_ID = REQUEST_ID_HEADER.lower()
_SESSION = SESSION_HEADER.lower()
_READ = frozenset(
    name.encode("latin-1")
    for name in ("authorization", "content-length", "host", "origin", _REQUEST_ID, _SESSION)
)


class DirectRoutes:
    """ASGI middleware in front of the inference app."""

    def __init__(self, app: AsgiApp, state: ControlPlane) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parse = _parser_for(scope)
        if parse is None:
            await self.app(scope, receive, send)
        else:
            await _Exchange(self.state, scope, receive, send).serve(parse)


def _parser_for(scope: Scope) -> Parse | None:
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    return PARSERS.get(scope["path"])


class _ClientLeft(Exception):
    """The client disconnected before its request was read."""


class _Exchange:
    """One request to a direct route and its answer."""

    def __init__(self, state: ControlPlane, scope: Scope, receive: Receive, send: Send) -> None:
        self.state = state
        self.scope = scope
        self.receive = receive
        self.send = send
        self.headers = request_headers(scope, _READ)
        self.ticket: Ticket | None = None
        self.started = False
        self.client_left = False
        self.report_sending: asyncio.Task[None] | None = None  # a report still being written

    async def serve(self, parse: Parse) -> None:
        current_request_id.set(request_id_from(self.headers.get(_REQUEST_ID)))
        try:
            await self._answer(parse)
        except _ClientLeft:
            return
        except Exception as error:
            if self.started:
                raise  # the server cuts the connection: an answer begun cannot be taken back
            await self._answer_error(self._openai_error(error))

    def _openai_error(self, error: Exception) -> errors.OpenAIError:
        if isinstance(error, errors.OpenAIError):
            return error
        logger.exception("Unhandled exception while serving POST %s", self.scope["path"])
        return errors.internal_error()

    async def _answer(self, parse: Parse) -> None:
        caller = self._caller()
        call = parse(await self._body())
        job, updates = submit(
            self.state,
            call.model,
            call.request,
            caller=caller,
            session_header=self.headers.get(_SESSION),
            on_admission=self._admitted,
            user=call.user,
            reports=self._report if call.stream else unheard,
        )
        try:
            if call.stream:
                await self._until_client_leaves(self._stream(call, job, updates))
            else:
                body = await self._until_client_leaves(collect_completion(call, updates))
                if body is not None:
                    await self._respond(200, JSON, json_bodies.dumps(body), {})
        finally:
            self.state.scheduler.withdraw(job, "client_disconnected")

    def _caller(self) -> Caller:
        directory = self.state.tenancy.directory
        caller = directory.authenticate(self.headers.get("authorization", ""))
        if caller is None:
            raise errors.invalid_api_key()
        return caller

    def _admitted(self, ticket: Ticket) -> None:
        self.ticket = ticket

    async def _body(self) -> bytes:
        """The request body, refused (413) once it is known to be over the limit."""
        limit = self.state.settings.max_request_bytes
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise errors.payload_too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise _ClientLeft
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise errors.payload_too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _stream(
        self, call: InferenceCall, job: InferenceJob, updates: AsyncIterator[Update]
    ) -> None:
        events = stream_completion(self.state, call, job, updates)
        chunks = server_sent_events.coalesced(events, ready=partial(at_hand, job))
        try:
            await self._start(200, EVENT_STREAM, server_sent_events.HEADERS)
            async for chunk in chunks:
                if self.report_sending is not None:
                    await self._reports_written()
                await self.send({"type": "http.response.body", "body": chunk, "more_body": True})
            if self.report_sending is not None:
                await self._reports_written()
            await self.send({"type": "http.response.body", "body": b""})
        finally:
            await chunks.aclose()  # the stream's clean-up withdraws the job

    def _report(self, update: Waiting) -> None:
        """Write a waiting stream's report, from the scheduler's timer (its task sleeps): at
        once, unless the previous one is still on its way (a client that reads that slowly
        needs no more)."""
        if self.report_sending is not None and not self.report_sending.done():
            return
        body = queued_comment(update)
        message = {"type": "http.response.body", "body": body, "more_body": True}
        self.report_sending = start_now(self._send_report(message))

    async def _send_report(self, message: Message) -> None:
        try:
            await self.send(message)
        except Exception as error:  # the connection is gone: the stream hears of it itself
            logger.debug("a queue report was not written: %r", error)

    async def _reports_written(self) -> None:
        """Wait for the report last begun (if still being written): what follows comes after."""
        assert self.report_sending is not None
        await self.report_sending
        self.report_sending = None

    async def _until_client_leaves(self, work: Awaitable[T]) -> T | None:
        """``work``'s result, run in this task; ``None`` if the client disconnects first, which
        cancels ``work`` at once."""
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.create_task(self._cancel_when_client_leaves(task))
        try:
            return await work
        except asyncio.CancelledError:
            if not self.client_left or task.uncancel() > 0:
                raise
            return None
        finally:
            watcher.cancel()

    async def _cancel_when_client_leaves(self, task: asyncio.Task[Any]) -> None:
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self.client_left = True
        task.cancel()

    async def _answer_error(self, error: errors.OpenAIError) -> None:
        await self._respond(error.status, JSON, json_bodies.dumps(error.body()), error.headers)

    async def _respond(
        self, status: int, content_type: str, body: bytes, headers: Mapping[str, str]
    ) -> None:
        await self._start(status, content_type, {**headers, "Content-Length": str(len(body))})
        await self.send({"type": "http.response.body", "body": body})

    async def _start(self, status: int, content_type: str, headers: Mapping[str, str]) -> None:
        """Send the status and headers: ``headers`` with what every answer of the inference
        API carries (as Quart's hooks add it), and count the request."""
        parts = (
            {"Content-Type": content_type},
            headers,
            self._cors_headers(),
            self.ticket.headers if self.ticket is not None else {},
            {REQUEST_ID_HEADER: current_request_id.get()},
        )
        every: dict[str, str] = {}  # by lowercase name: a later part wins, as in Quart's hooks
        for part in parts:
            every.update((name.lower(), value) for name, value in part.items())
        self.started = True
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (name.encode("latin-1"), value.encode("latin-1"))
                    for name, value in every.items()
                ],
            }
        )
        self.state.metrics.count_request(self.scope["path"], status)

    def _cors_headers(self) -> dict[str, str]:
        origin = self.headers.get("origin", "")
        host = ""  # read only to tell an origin's page (no Origin: not from a page)
        if origin:
            scope = self.scope
            host = get_host(scope["scheme"], self.headers.get("host"), scope.get("server"))
        return cors_headers(self.state.settings, origin=origin, host=host, preflight=False)
