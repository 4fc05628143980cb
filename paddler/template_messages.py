"""Chat messages as chat templates take them: OpenAI's shape, as plain dicts."""

from __future__ import annotations

import json

from paddler.protocol import ChatMessage

__all__ = ["call_arguments", "message_chars", "template_message"]

# Roles most templates do not know, and the role they mean.
_ROLE_ALIASES = {"developer": "system"}


def template_message(message: ChatMessage) -> dict[str, object]:
    """A message as templates expect it (OpenAI's shape; a call's arguments parsed when they
    are JSON, since templates write them with ``tojson``)."""
    written: dict[str, object] = {
        "role": _ROLE_ALIASES.get(message.role, message.role),
        "content": message.content,
    }
    if message.tool_calls:
        written["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call_arguments(call.arguments)},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        written["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        written["name"] = message.name
    return written


def call_arguments(text: str) -> object:
    """A call's arguments: the parsed object when they are JSON, else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def message_chars(message: ChatMessage) -> int:
    calls = sum(len(call.name) + len(call.arguments) for call in message.tool_calls)
    return len(message.content) + calls
