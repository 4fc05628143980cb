"""A response's output items, built from the agent's ``Token`` pieces as they come, with the
stream events that tell a client about each step.

An item opens when the first piece of its kind arrives (thoughts: a ``reasoning`` item, answer
text: a ``message``, a tool call: a ``function_call``) and is done when a piece of another kind
arrives or the generation ends. A non-streaming response is built the same way and its events
dropped, so both give the same output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from control_plane.inference.responses_api import ids
from control_plane.inference.responses_api.objects import (
    ItemStatus,
    function_call_item,
    message_item,
    output_text_part,
    reasoning_item,
    reasoning_part,
)
from paddler.protocol import ChatMessage, Token, ToolCall, ToolCallDelta

JsonObject = dict[str, Any]
Kind = Literal["reasoning", "message", "function_call"]


@dataclass
class _OpenItem:
    kind: Kind
    id: str
    output_index: int
    call_index: int = -1  # the agent's index of a function call
    call_id: str = ""
    name: str = ""
    pieces: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.pieces)


class ResponseOutput:
    def __init__(self) -> None:
        self.items: list[JsonObject] = []  # done items, in output order
        self._open: _OpenItem | None = None
        self._text: list[str] = []
        self._calls: list[ToolCall] = []

    def add(self, token: Token) -> list[JsonObject]:
        """The events of one piece of the answer (each without its ``sequence_number``)."""
        events: list[JsonObject] = []
        if token.reasoning:
            events += self._piece("reasoning", token.reasoning)
        if token.text:
            self._text.append(token.text)
            events += self._piece("message", token.text)
        for delta in token.tool_calls:
            events += self._call_piece(delta)
        return events

    def finish(self, status: ItemStatus) -> list[JsonObject]:
        """Close the open item with ``status``; an answer with no output at all gets an empty
        message, so that every response says something."""
        events: list[JsonObject] = []
        if self._open is None and not self.items:
            events += self._start("message")
        events += self._close(status)
        return events

    def assistant_message(self) -> ChatMessage:
        """The answer as the assistant turn a continuation replays (thoughts left out)."""
        return ChatMessage(
            role="assistant", content="".join(self._text), tool_calls=tuple(self._calls)
        )

    def _piece(self, kind: Literal["reasoning", "message"], text: str) -> list[JsonObject]:
        events = [] if self._open is not None and self._open.kind == kind else self._switch(kind)
        item = self._require_open()
        item.pieces.append(text)
        delta = (
            "response.output_text.delta" if kind == "message" else "response.reasoning_text.delta"
        )
        event = {**_where(item), "type": delta, "content_index": 0, "delta": text}
        if kind == "message":
            event["logprobs"] = []
        return [*events, event]

    def _call_piece(self, delta: ToolCallDelta) -> list[JsonObject]:
        events: list[JsonObject] = []
        current = self._open
        if current is None or current.kind != "function_call" or current.call_index != delta.index:
            events += self._close("completed")
            current = _OpenItem(
                kind="function_call",
                id=ids.new_id("fc"),
                output_index=len(self.items),
                call_index=delta.index,
                call_id=delta.id or ids.new_id("call"),
                name=delta.name or "",
            )
            events += self._open_item(current)
        if delta.arguments:
            current.pieces.append(delta.arguments)
            events.append(
                {
                    **_where(current),
                    "type": "response.function_call_arguments.delta",
                    "delta": delta.arguments,
                }
            )
        return events

    def _switch(self, kind: Literal["reasoning", "message"]) -> list[JsonObject]:
        return [*self._close("completed"), *self._start(kind)]

    def _start(self, kind: Literal["reasoning", "message"]) -> list[JsonObject]:
        prefix = "rs" if kind == "reasoning" else "msg"
        return self._open_item(
            _OpenItem(kind=kind, id=ids.new_id(prefix), output_index=len(self.items))
        )

    def _open_item(self, item: _OpenItem) -> list[JsonObject]:
        self._open = item
        added: JsonObject = {
            "type": "response.output_item.added",
            "output_index": item.output_index,
            "item": _item(item, "in_progress"),
        }
        if item.kind == "function_call":
            return [added]
        return [added, {**_where(item), **_part_event(item, "added", "")}]

    def _close(self, status: ItemStatus) -> list[JsonObject]:
        item, self._open = self._open, None
        if item is None:
            return []
        events: list[JsonObject] = []
        if item.kind == "function_call":
            self._calls.append(_call(item))
            events.append(
                {
                    **_where(item),
                    "type": "response.function_call_arguments.done",
                    "arguments": item.text,
                }
            )
        else:
            done = (
                "response.output_text.done"
                if item.kind == "message"
                else "response.reasoning_text.done"
            )
            text_done: JsonObject = {
                **_where(item),
                "type": done,
                "content_index": 0,
                "text": item.text,
            }
            if item.kind == "message":
                text_done["logprobs"] = []
            events += [text_done, {**_where(item), **_part_event(item, "done", item.text)}]
        finished = _item(item, status)
        self.items.append(finished)
        events.append(
            {
                "type": "response.output_item.done",
                "output_index": item.output_index,
                "item": finished,
            }
        )
        return events

    def _require_open(self) -> _OpenItem:
        assert self._open is not None
        return self._open


def _where(item: _OpenItem) -> JsonObject:
    return {"item_id": item.id, "output_index": item.output_index}


def _part_event(item: _OpenItem, stage: str, text: str) -> JsonObject:
    part = output_text_part(text) if item.kind == "message" else reasoning_part(text)
    return {"type": f"response.content_part.{stage}", "content_index": 0, "part": part}


def _call(item: _OpenItem) -> ToolCall:
    return ToolCall(id=item.call_id, name=item.name, arguments=item.text)


def _item(item: _OpenItem, status: ItemStatus) -> JsonObject:
    if item.kind == "function_call":
        return function_call_item(item.id, _call(item), status)
    if item.kind == "message":
        return message_item(item.id, item.text, status)
    return reasoning_item(item.id, item.text, status)
