"""The websocket agents dial: registration, heartbeats, and job traffic.

It is served on ASGI in front of the management app (:class:`AgentSocketRoute`), not as a Quart
route: see asgi_websocket.py. A connection is three tasks: the reader (the agent's frames to the
scheduler), the writer (the link's outbox to the agent) and the recorder (state changes to the
database). They are supervised together: when one ends, the connection is closed and the
agent's jobs fail over, so an agent is never left half connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pydantic

from control_plane.asgi import AsgiApp, Scope
from control_plane.credentials import bearer_token, secrets_match
from control_plane.management.agent_outbox import write_frames
from control_plane.management.agent_records import AgentRecorder
from control_plane.management.asgi_websocket import AsgiWebsocket, WebsocketClosed
from control_plane.management.connection_tasks import supervise
from control_plane.management.embedding_assembly import EmbeddingAssembly, PartRefused
from control_plane.serving.fleet import AgentLink
from control_plane.state import ControlPlane
from paddler import protocol

logger = logging.getLogger("paddler.agents")

HELLO_TIMEOUT_SECONDS = 10.0
ID_IN_USE = "an agent with this id is already connected"


class AgentSocketRoute:
    """ASGI middleware in front of the management app: the agent websocket is served here,
    everything else goes to the app unchanged."""

    def __init__(self, app: AsgiApp, state: ControlPlane) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket" or scope["path"] != protocol.AGENT_SOCKET_PATH:
            await self.app(scope, receive, send)
            return
        socket = AsgiWebsocket(scope, receive, send)
        try:
            await agent_connection(self.state, socket)
        except WebsocketClosed:
            return
        except Exception:
            logger.exception("the agent connection from %s failed", socket.remote_address)
            if socket.accepted:
                await socket.close(1011, "control plane error")
            else:
                await socket.refuse(500, "internal error")
        await socket.close(1000)


def _authorized(state: ControlPlane, socket: AsgiWebsocket) -> bool:
    expected = state.settings.agent_token
    if not expected:
        return True
    presented = bearer_token(socket.headers.get("authorization", ""))
    return presented is not None and secrets_match(presented, expected)


async def agent_connection(state: ControlPlane, socket: AsgiWebsocket) -> None:
    remote = socket.remote_address
    if not _authorized(state, socket):
        logger.warning("refused an agent from %s: wrong or missing token", remote)
        await socket.refuse(401, "invalid agent token")
        return
    await socket.accept()
    hello = await _receive_hello(socket)
    if hello is None:
        return
    await state.ensure_pool(hello.pool, hello.model_source, hello.slots)
    if await _id_in_use(state, socket, hello):
        return
    link = AgentLink(
        agent_id=hello.agent_id,
        name=hello.name,
        pool=hello.pool,
        model=hello.model,
        slots=hello.slots,
        remote_address=remote,
        instance_id=hello.instance_id,
        embeddings=hello.embeddings,
        applied_version=hello.applied_version,
        cpu=hello.cpu,
    )
    await _record_connected(state, link)
    if await _id_in_use(state, socket, hello):  # taken while the record was being written
        await _record_disconnect(state, link, ID_IN_USE)
        return
    settings = state.settings
    link.send(
        protocol.Welcome(
            pool=link.pool,
            heartbeat_seconds=settings.agent_timeout / 3,
            max_frame_bytes=settings.agent_max_frame_bytes,
        )
    )
    state.scheduler.agent_joined(link)
    state.rollout.agent_joined(link)
    recorder = AgentRecorder(state.store, link.agent_id, link.name)

    def refuse_job(job: protocol.Job, problem: str) -> None:
        logger.warning("job %s was not sent to agent %s; failing it", job.job_id, link.name)
        error = protocol.JobError(
            job_id=job.job_id, code=protocol.INVALID_MESSAGES, message=problem
        )
        state.scheduler.agent_message(link, error)

    reader = asyncio.create_task(_read(state, socket, link, recorder), name="reader")
    others = [
        asyncio.create_task(
            write_frames(link, socket.send, refuse_job, settings.agent_max_frame_bytes),
            name="writer",
        ),
        asyncio.create_task(recorder.run(), name="recorder"),
    ]
    _log_joined(link)
    reason = "connection closed"
    try:
        reason = await supervise(link.name, reader, *others, close=socket.close)
    finally:
        for task in (reader, *others):
            task.cancel()
        state.scheduler.agent_left(link)
        state.rollout.agent_left(link)
        logger.info("agent %s left pool %s: %s", link.name, link.pool, reason)
        await asyncio.shield(_record_disconnect(state, link, reason))


async def _id_in_use(state: ControlPlane, socket: AsgiWebsocket, hello: protocol.Hello) -> bool:
    """Refuse a connection whose agent id is connected already, keeping the live one: a
    process that reuses an id must not evict its agent. An agent whose old connection is
    really gone gets in once the control plane notices (``agent_timeout`` at most)."""
    live = state.fleet.get(hello.agent_id)
    if live is None:
        return False
    logger.warning(
        "refused agent %s from %s: id %s is already connected as %s from %s",
        hello.name,
        socket.remote_address,
        hello.agent_id,
        live.name,
        live.remote_address,
    )
    await socket.close(1008, ID_IN_USE)
    return True


async def _receive_hello(socket: AsgiWebsocket) -> protocol.Hello | None:
    remote = socket.remote_address
    try:
        hello = protocol.decode_agent_message(
            await asyncio.wait_for(socket.receive(), HELLO_TIMEOUT_SECONDS)
        )
    except (TimeoutError, pydantic.ValidationError) as error:
        logger.warning("agent from %s did not say hello: %s", remote, error)
        await socket.close(1002, "expected a hello message")
        return None
    if not isinstance(hello, protocol.Hello) or hello.protocol != protocol.PROTOCOL_VERSION:
        logger.warning("agent from %s sent %r instead of a protocol 1 hello", remote, hello)
        await socket.close(1002, f"expected a protocol {protocol.PROTOCOL_VERSION} hello")
        return None
    return hello


async def _read(
    state: ControlPlane, socket: AsgiWebsocket, link: AgentLink, recorder: AgentRecorder
) -> str:
    """Relay the agent's messages to the scheduler until it goes quiet or away.

    Frames come by the thousand a second: each costs a clock reading, not a task or a timer.
    The silence deadline moves only when half of it has passed, so it may fire early; the
    loop then looks at when it last heard and goes on. Shutting down makes it fire at once.
    """
    limit = state.settings.agent_timeout
    loop = asyncio.get_running_loop()
    heard = loop.time()
    assembly = EmbeddingAssembly()
    closing = asyncio.ensure_future(state.closing.wait())
    silence: asyncio.Timeout | None = None

    def interrupt(_: object) -> None:
        if silence is not None and not silence.expired():
            with contextlib.suppress(RuntimeError):  # between two waits: the next one looks
                silence.reschedule(loop.time())

    closing.add_done_callback(interrupt)
    try:
        while True:
            try:
                async with asyncio.timeout_at(heard + limit) as silence:
                    if closing.done():
                        interrupt(closing)
                    while True:
                        frame = await socket.receive()
                        heard = loop.time()
                        when = silence.when()
                        if when is not None and when - heard < limit / 2:
                            silence.reschedule(heard + limit)
                        reason = _handle(state, link, assembly, recorder, frame)
                        if reason is not None:
                            await socket.close(1000, "goodbye")
                            return reason
            except WebsocketClosed as closed:
                return f"connection closed ({closed.code})"
            except TimeoutError:
                if closing.done():
                    await socket.close(1001, "control plane shutting down")
                    return "control plane shutting down"
                if loop.time() - heard >= limit:
                    return f"silent for {limit:.0f}s"
    finally:
        closing.remove_done_callback(interrupt)
        closing.cancel()


def _handle(
    state: ControlPlane,
    link: AgentLink,
    assembly: EmbeddingAssembly,
    recorder: AgentRecorder,
    frame: str | bytes,
) -> str | None:
    """Relay one frame; why the connection ends, if the agent said goodbye."""
    last_state = link.state
    message = _relay(state, link, assembly, frame)
    if isinstance(message, protocol.Goodbye):
        return f"said goodbye ({message.reason})"
    if link.state != last_state:
        recorder.state_changed(link.state)
    return None


def _relay(
    state: ControlPlane, link: AgentLink, assembly: EmbeddingAssembly, frame: str | bytes
) -> protocol.AgentMessage | None:
    """Hand one frame to the scheduler; None for an invalid frame."""
    try:
        message = protocol.decode_agent_message(frame)
    except pydantic.ValidationError as error:
        logger.warning("agent %s sent an invalid message: %s", link.name, error)
        return None
    match message:
        case protocol.EmbeddingsPart():
            failed = _keep_part(link, assembly, message)
            if failed is None:
                return message
            message = failed
        case protocol.Embeddings():
            message = assembly.complete(message)
        case protocol.JobError() | protocol.Done():
            assembly.discard(message.job_id)
    state.scheduler.agent_message(link, message)
    if isinstance(message, protocol.Status):
        state.rollout.agent_reported(link)
    return message


def _keep_part(
    link: AgentLink, assembly: EmbeddingAssembly, part: protocol.EmbeddingsPart
) -> protocol.JobError | None:
    """Keep a part of a running embedding job; the job's error if the part is wrong."""
    job = link.jobs.get(part.job_id)
    if job is None or not isinstance(job.request, protocol.EmbeddingRequest):
        return None  # a job that ended already (cancelled, failed): nothing to keep
    try:
        assembly.add(part, len(job.request.inputs))
    except PartRefused as error:
        logger.warning("agent %s sent a wrong embeddings part: %s", link.name, error)
        return protocol.JobError(
            job_id=part.job_id, code=protocol.ENGINE_FAILURE, message=f"broken answer: {error}"
        )
    return None


async def _record_connected(state: ControlPlane, link: AgentLink) -> None:
    """Record the connection before the agent gets work, so that its record is there first."""
    try:
        link.connection_id = await state.store.agent_connected(
            link.agent_id, link.name, link.pool, link.state, link.remote_address
        )
    except Exception:
        logger.exception("could not record that agent %s connected; it serves anyway", link.name)


async def _record_disconnect(state: ControlPlane, link: AgentLink, reason: str) -> None:
    try:
        await state.record_disconnect(link, reason)
    except Exception:
        logger.exception("could not record that agent %s left", link.name)


def _log_joined(link: AgentLink) -> None:
    logger.info(
        "agent %s joined pool %s from %s (%d slots%s; cpu %s, %s)",
        link.name,
        link.pool,
        link.remote_address,
        link.slots,
        ", embeddings" if link.embeddings else "",
        " ".join(link.cpu.features) or "baseline" if link.cpu else "not reported",
        link.cpu.summary if link.cpu else "repack unknown",
    )
