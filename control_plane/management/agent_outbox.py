"""The frames the control plane writes to an agent: each one encoded and within the limit,
or, for a job that cannot be, that job refused instead of the connection."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from control_plane.serving.fleet import AgentLink
from paddler import protocol

logger = logging.getLogger("paddler.agents")

Send = Callable[[str], Awaitable[None]]
RefuseJob = Callable[[protocol.Job, str], None]

UNENCODABLE = (
    "The request cannot be sent to an agent: it holds text that is not valid Unicode "
    "(such as a lone surrogate) or a structure nested too deeply."
)


async def write_frames(
    link: AgentLink, send: Send, refuse_job: RefuseJob, max_frame_bytes: int
) -> None:
    """Write ``link``'s outbox to ``send`` in order, forever."""
    while True:
        message = await link.outbox.get()
        try:
            frame = protocol.encode(message)
        except (ValueError, RecursionError) as error:
            logger.warning("cannot encode a %s for agent %s: %r", _kind(message), link.name, error)
            problem = UNENCODABLE
        else:
            size = _size_over(frame, max_frame_bytes)
            if size is None:
                await send(frame)
                continue
            problem = (
                f"The request is too large to send to an agent: {size} bytes encoded, "
                f"more than the limit of {max_frame_bytes}."
            )
        if isinstance(message, protocol.Job):
            refuse_job(message, problem)
        else:
            logger.error("dropped a %s for agent %s: %s", _kind(message), link.name, problem)


def _size_over(frame: str, limit: int) -> int | None:
    """The frame's size in bytes if it is over ``limit``; None (and no encoding) if it fits."""
    if len(frame) * 4 <= limit:  # no character takes more than 4 bytes in UTF-8
        return None
    size = len(frame.encode())
    return size if size > limit else None


def _kind(message: protocol.Message) -> str:
    return type(message).__name__
