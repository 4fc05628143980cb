"""A streamed response: OpenAI's typed events, each with its ``sequence_number`` and an
``event:`` line naming its type, from ``response.created`` to ``response.completed`` (or
``response.incomplete``). A failure after the stream began is told, never a silent cut: an
``error`` event, then ``response.failed``. Comments keep the connection alive while the
request waits for a slot or its first token."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from control_plane import errors, json_bodies, server_sent_events, serving_errors
from control_plane.inference.responses_api.generation import ResponseRun
from control_plane.inference.routes import queued_comment
from control_plane.serving.jobs import InferenceJob
from control_plane.serving.relay import KeepAlive, Update, Waiting
from control_plane.state import ControlPlane
from paddler.protocol import Done, Token

logger = logging.getLogger("paddler.inference")


class _Events:
    """Numbers events in the order they are sent."""

    def __init__(self) -> None:
        self._next = 0

    def send(self, event: dict[str, Any]) -> bytes:
        data = json_bodies.dumps({**event, "sequence_number": self._next})
        self._next += 1
        return server_sent_events.json_event(data, name=event["type"])


async def stream_response(
    state: ControlPlane, run: ResponseRun, job: InferenceJob, updates: AsyncIterator[Update]
) -> AsyncIterator[bytes]:
    """Runs outside the request context: everything it needs is passed in."""
    events = _Events()
    try:
        yield events.send({"type": "response.created", "response": run.body("in_progress")})
        yield events.send({"type": "response.in_progress", "response": run.body("in_progress")})
        if job.waiting:
            expected = state.autoscaling.expected_wait(job.pool)
            yield queued_comment(Waiting(state.scheduler.position(job), 0, expected))
        async for update in updates:
            if isinstance(update, Waiting):
                yield queued_comment(update)
            elif isinstance(update, KeepAlive):
                yield server_sent_events.comment("keep-alive")
            elif isinstance(update, Token):
                for event in run.output.add(update):
                    yield events.send(event)
            elif isinstance(update, Done):
                closing, body = await run.finish(update)
                for event in closing:
                    yield events.send(event)
                yield events.send({"type": f"response.{body['status']}", "response": body})
                return
        raise serving_errors.agent_lost("the agent stopped without finishing the request")
    except errors.OpenAIError as error:
        logger.info("response stream of job %s ended with %s", job.id, error.code)
        for event in _failure(run, error):
            yield events.send(event)
    except Exception:
        logger.exception("response stream of job %s failed", job.id)
        for event in _failure(run, errors.internal_error()):
            yield events.send(event)
    finally:
        state.scheduler.withdraw(job, "client_disconnected")


def _failure(run: ResponseRun, error: errors.OpenAIError) -> list[dict[str, Any]]:
    return [
        {"type": "error", "code": error.code, "message": error.message, "param": error.param},
        {"type": "response.failed", "response": run.body("failed", error=error)},
    ]
