"""``input`` of a Responses request: a string, or items (messages, function calls, their
outputs, reasoning), turned into chat messages for the agent and into the items
``GET /v1/responses/{id}/input_items`` lists.

A ``function_call`` item joins the assistant turn before it (text and calls are one turn);
reasoning items are dropped, as a chat template has nowhere to put an earlier turn's thoughts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from control_plane.errors import invalid_value
from control_plane.inference.bodies import non_empty_string
from control_plane.inference.responses_api import ids
from control_plane.inference.responses_api.item_fields import required_string
from control_plane.inference.responses_api.message_content import message_text
from control_plane.inference.responses_api.objects import function_call_item
from control_plane.inference.validation import (
    invalid_type,
    reject_unknown_keys,
    required_field,
    unsupported_value,
)
from paddler.protocol import ChatMessage, ToolCall

JsonObject = dict[str, Any]

_ROLES = ("user", "system", "developer", "assistant")
_MESSAGE_KEYS = ("type", "role", "content", "id", "status", "phase")
_CALL_KEYS = ("type", "call_id", "name", "arguments", "id", "status")
_OUTPUT_KEYS = ("type", "call_id", "output", "id", "status")
_REASONING_KEYS = ("type", "id", "summary", "content", "encrypted_content", "status")


@dataclass(frozen=True)
class ReadInput:
    messages: tuple[ChatMessage, ...]
    items: tuple[JsonObject, ...]  # as the API lists them, each with an id


def read_input(raw: object, earlier_calls: Mapping[str, str]) -> ReadInput:
    """``raw`` as chat messages; ``earlier_calls`` maps the call ids the conversation made
    before this input (a previous response's) to their function names."""
    if isinstance(raw, str):
        text = non_empty_string(raw, "input")
        return ReadInput((ChatMessage(role="user", content=text),), (_message_item("user", text),))
    if raw is None:
        raise invalid_value("input", "expected a string or a non-empty array of input items")
    if not isinstance(raw, list):
        raise invalid_type("input", "a string or an array of input items", raw)
    if not raw:
        raise invalid_value("input", "expected a string or a non-empty array of input items")
    reader = _Reader(dict(earlier_calls))
    for index, item in enumerate(raw):
        reader.read(item, f"input[{index}]")
    return ReadInput(tuple(reader.messages), tuple(reader.items))


class _Reader:
    def __init__(self, calls: dict[str, str]) -> None:
        self.calls = calls
        self.messages: list[ChatMessage] = []
        self.items: list[JsonObject] = []

    def read(self, item: object, param: str) -> None:
        if not isinstance(item, dict):
            raise invalid_type(param, "an object (an input item)", item)
        kind = item.get("type", "message" if "role" in item else None)
        if kind is None:
            raise invalid_value(param, "an input item needs a 'type' (or a 'role', for a message)")
        if kind == "message":
            self._message(item, param)
        elif kind == "function_call":
            self._function_call(item, param)
        elif kind == "function_call_output":
            self._function_call_output(item, param)
        elif kind == "reasoning":
            reject_unknown_keys(item, _REASONING_KEYS, param)
            self.items.append({**item, "id": _id(item.get("id"), "rs")})
        else:
            raise unsupported_value(
                f"{param}.type",
                f"input items of type {kind!r} are not supported; 'message', 'function_call', "
                "'function_call_output' and 'reasoning' items are.",
            )

    def _message(self, item: JsonObject, param: str) -> None:
        reject_unknown_keys(item, _MESSAGE_KEYS, param)
        role = required_field(item, "role", param)
        if role not in _ROLES:
            raise invalid_value(
                f"{param}.role", f"expected one of {', '.join(map(repr, _ROLES))}, got {role!r}"
            )
        text = message_text(required_field(item, "content", param), role, f"{param}.content")
        self.messages.append(ChatMessage(role=role, content=text))
        self.items.append(_message_item(role, text, item.get("id")))

    def _function_call(self, item: JsonObject, param: str) -> None:
        reject_unknown_keys(item, _CALL_KEYS, param)
        call = ToolCall(
            id=required_string(item, "call_id", param),
            name=required_string(item, "name", param),
            arguments=required_string(item, "arguments", param, empty=True),
        )
        self.calls[call.id] = call.name
        last = self.messages[-1] if self.messages else None
        if last is not None and last.role == "assistant":
            self.messages[-1] = last.model_copy(update={"tool_calls": (*last.tool_calls, call)})
        else:
            self.messages.append(ChatMessage(role="assistant", tool_calls=(call,)))
        self.items.append(function_call_item(_id(item.get("id"), "fc"), call, "completed"))

    def _function_call_output(self, item: JsonObject, param: str) -> None:
        reject_unknown_keys(item, _OUTPUT_KEYS, param)
        call_id = required_string(item, "call_id", param)
        if call_id not in self.calls:
            raise invalid_value(
                f"{param}.call_id",
                f"no function_call before it (here or in the previous response) has the "
                f"call_id {call_id!r}",
            )
        output = message_text(required_field(item, "output", param), "tool", f"{param}.output")
        self.messages.append(
            ChatMessage(role="tool", content=output, name=self.calls[call_id], tool_call_id=call_id)
        )
        self.items.append(
            {
                "type": "function_call_output",
                "id": _id(item.get("id"), "fco"),
                "call_id": call_id,
                "output": output,
                "status": "completed",
            }
        )


def _message_item(role: str, text: str, item_id: object = None) -> JsonObject:
    part = "output_text" if role == "assistant" else "input_text"
    content: JsonObject = {"type": part, "text": text}
    if role == "assistant":
        content["annotations"] = []
    return {
        "type": "message",
        "id": _id(item_id, "msg"),
        "role": role,
        "status": "completed",
        "content": [content],
    }


def _id(given: object, prefix: str) -> str:
    """The item's own id when it has one, else a new one."""
    return given if isinstance(given, str) and given else ids.new_id(prefix)
