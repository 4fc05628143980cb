"""The websocket agents dial: registration, heartbeats, and job traffic."""

from __future__ import annotations

import asyncio
import hmac
import logging

import pydantic
from quart import Blueprint, Response, websocket

from control_plane.credentials import bearer_token
from control_plane.serving.fleet import AgentLink
from control_plane.state import ControlPlane, current_control_plane
from paddler import protocol

logger = logging.getLogger("paddler.agents")

agent_socket = Blueprint("agent_socket", __name__)

HELLO_TIMEOUT_SECONDS = 10.0


def _authorized(state: ControlPlane) -> bool:
    expected = state.settings.agent_token
    if not expected:
        return True
    presented = bearer_token(websocket.headers.get("Authorization", ""))
    return presented is not None and hmac.compare_digest(presented, expected)


@agent_socket.websocket(protocol.AGENT_SOCKET_PATH)
async def agent_connection() -> Response | None:
    state = current_control_plane()
    remote = websocket.remote_addr
    if not _authorized(state):
        logger.warning("refused an agent from %s: wrong or missing token", remote)
        return Response("invalid agent token", status=401)
    await websocket.accept()
    try:
        hello = protocol.decode_agent_message(
            await asyncio.wait_for(websocket.receive(), HELLO_TIMEOUT_SECONDS)
        )
    except (TimeoutError, pydantic.ValidationError) as error:
        logger.warning("agent from %s did not say hello: %s", remote, error)
        await websocket.close(1002, "expected a hello message")
        return None
    if not isinstance(hello, protocol.Hello) or hello.protocol != protocol.PROTOCOL_VERSION:
        logger.warning("agent from %s sent %r instead of a protocol 1 hello", remote, hello)
        await websocket.close(1002, f"expected a protocol {protocol.PROTOCOL_VERSION} hello")
        return None

    await state.ensure_pool(hello.pool, hello.model_source, hello.slots)
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
    link.connection_id = await state.store.agent_connected(
        hello.agent_id, hello.name, hello.pool, link.state, remote
    )
    logger.info(
        "agent %s joined pool %s from %s (%d slots%s; cpu %s, %s)",
        link.name,
        link.pool,
        remote,
        link.slots,
        ", embeddings" if link.embeddings else "",
        " ".join(link.cpu.features) or "baseline" if link.cpu else "not reported",
        link.cpu.summary if link.cpu else "repack unknown",
    )
    heartbeat = state.settings.agent_timeout / 3
    link.send(protocol.Welcome(pool=link.pool, heartbeat_seconds=heartbeat))
    state.scheduler.agent_joined(link)
    state.rollout.agent_joined(link)
    writer = asyncio.create_task(_write(link))
    reason = "connection closed"
    try:
        reason = await _read(state, link)
    finally:
        writer.cancel()
        state.scheduler.agent_left(link)
        state.rollout.agent_left(link)
        logger.info("agent %s left pool %s: %s", link.name, link.pool, reason)
        await asyncio.shield(state.record_disconnect(link, reason))
    return None


async def _write(link: AgentLink) -> None:
    while True:
        message = await link.outbox.get()
        await websocket.send(protocol.encode(message))


async def _read(state: ControlPlane, link: AgentLink) -> str:
    """Relay the agent's messages to the scheduler until it goes quiet or away."""
    last_state = link.state
    closing = asyncio.ensure_future(state.closing.wait())
    try:
        while True:
            receiving = asyncio.ensure_future(websocket.receive())
            await asyncio.wait(
                {receiving, closing},
                timeout=state.settings.agent_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not receiving.done():
                receiving.cancel()
                if closing.done():
                    await websocket.close(1001, "control plane shutting down")
                    return "control plane shutting down"
                return f"silent for {state.settings.agent_timeout:.0f}s"
            message = await _relay(state, link, receiving.result(), last_state)
            if isinstance(message, protocol.Goodbye):
                await websocket.close(1000, "goodbye")
                return f"said goodbye ({message.reason})"
            last_state = link.state
    finally:
        closing.cancel()


async def _relay(
    state: ControlPlane, link: AgentLink, frame: str | bytes, last_state: protocol.AgentState
) -> protocol.AgentMessage | None:
    """Hand one frame to the scheduler and persist state changes; None for an invalid frame."""
    try:
        message = protocol.decode_agent_message(frame)
    except pydantic.ValidationError as error:
        logger.warning("agent %s sent an invalid message: %s", link.name, error)
        return None
    state.scheduler.agent_message(link, message)
    if isinstance(message, protocol.Status):
        state.rollout.agent_reported(link)
    if link.state != last_state:
        await state.store.agent_state_changed(link.agent_id, link.state)
    return message
