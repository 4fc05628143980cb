"""One response being generated: its output as the agent's pieces come, and the response object
once it is done (saved first, when the request asked to store it)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from control_plane import errors, serving_errors
from control_plane.inference.responses_api.objects import Status, response_object
from control_plane.inference.responses_api.output import ResponseOutput
from control_plane.inference.responses_api.requests import ResponsesCall
from control_plane.serving.relay import Update
from paddler.protocol import ChatMessage, Done, Token, Usage

JsonObject = dict[str, Any]
# keeps a finished response: its object and the assistant turn a continuation replays
Save = Callable[[JsonObject, ChatMessage], Awaitable[None]]


@dataclass
class ResponseRun:
    call: ResponsesCall
    id: str
    created_at: int
    save: Save | None = None
    output: ResponseOutput = field(default_factory=ResponseOutput)

    def body(
        self,
        status: Status,
        *,
        usage: Usage | None = None,
        error: errors.OpenAIError | None = None,
    ) -> JsonObject:
        return response_object(
            self.call,
            self.id,
            self.created_at,
            status=status,
            output=list(self.output.items),
            usage=usage,
            error=error,
        )

    async def finish(self, done: Done) -> tuple[list[JsonObject], JsonObject]:
        """The events that close the output, and the finished response (already saved)."""
        status: Status = "incomplete" if done.finish_reason == "length" else "completed"
        events = self.output.finish("incomplete" if status == "incomplete" else "completed")
        body = self.body(status, usage=done.usage)
        if self.save is not None:
            await self.save(body, self.output.assistant_message())
        return events, body


async def collect(run: ResponseRun, updates: AsyncIterator[Update]) -> JsonObject:
    """The whole response of a non-streaming request."""
    async for update in updates:
        if isinstance(update, Token):
            run.output.add(update)
        elif isinstance(update, Done):
            _, body = await run.finish(update)
            return body
    raise serving_errors.agent_lost("the agent stopped without finishing the request")
