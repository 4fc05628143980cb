"""The chunks of a streamed ``POST /v1/chat/completions`` answer.

A stream opens with the assistant's role, carries each piece the agent sends as a delta of
``content``, ``reasoning_content`` and ``tool_calls`` (the first piece of call ``i`` with its id,
type and name; later ones with argument text only, as the openai SDK accumulates them), and ends
with the finish reason, then the usage when it was asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

from control_plane.inference.logprob_objects import chat_logprobs
from control_plane.inference.openai_objects import (
    Header,
    JsonObject,
    openai_finish_reason,
    usage_object,
)
from paddler.protocol import Done, FinishReason, Token, TokenLogprob, ToolCallDelta

CHUNK = "chat.completion.chunk"


class ChatStream:
    """The chunks of one streamed chat answer, from the agent's pieces."""

    def __init__(self, header: Header, *, logprobs: bool, include_usage: bool) -> None:
        self.header = header
        self.logprobs = logprobs
        self.include_usage = include_usage

    def opening(self) -> list[JsonObject]:
        # content null, as the answer may turn out to be only tool calls
        return [chat_chunk(self.header, {"role": "assistant", "content": None})]

    def piece(self, token: Token) -> list[JsonObject]:
        delta = piece_delta(token)
        if not self.logprobs:
            return [chat_chunk(self.header, delta)] if delta else []
        if not delta and not token.logprobs:
            return []
        return [chat_chunk(self.header, delta, logprobs=token.logprobs)]

    def ending(self, done: Done) -> list[JsonObject]:
        chunks = [chat_chunk(self.header, {}, finish_reason=done.finish_reason)]
        if self.include_usage:
            chunks.append(chat_usage_chunk(self.header, done))
        return chunks


def piece_delta(token: Token) -> JsonObject:
    """A piece's ``delta``: only the fields it has."""
    delta: JsonObject = {}
    if token.text:
        delta["content"] = token.text
    if token.reasoning:
        delta["reasoning_content"] = token.reasoning
    if token.tool_calls:
        delta["tool_calls"] = [tool_call_delta(call) for call in token.tool_calls]
    return delta


def tool_call_delta(call: ToolCallDelta) -> JsonObject:
    entry: JsonObject = {"index": call.index}
    function: JsonObject = {}
    if call.id is not None:
        entry["id"] = call.id
        entry["type"] = "function"
    if call.name is not None:
        function["name"] = call.name
    function["arguments"] = call.arguments
    entry["function"] = function
    return entry


def chat_chunk(
    header: Header,
    delta: JsonObject,
    *,
    logprobs: Sequence[TokenLogprob] | None = None,
    finish_reason: FinishReason | None = None,
) -> JsonObject:
    return {
        **header.fields(CHUNK),
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "logprobs": None if logprobs is None else chat_logprobs(logprobs),
                "finish_reason": openai_finish_reason(finish_reason),
            }
        ],
    }


def chat_usage_chunk(header: Header, done: Done) -> JsonObject:
    """The extra chunk sent before ``[DONE]`` when ``stream_options.include_usage`` is set."""
    return {**header.fields(CHUNK), "choices": [], "usage": usage_object(done.usage)}
