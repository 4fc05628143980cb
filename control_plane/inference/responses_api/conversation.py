"""A stored response's conversation: the chat messages that led to it and its answer, kept as
JSON so that ``previous_response_id`` can continue it. Instructions are not kept: OpenAI does
not carry them over to the next response."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from paddler.protocol import ChatMessage


def conversation_json(messages: Iterable[ChatMessage]) -> list[dict[str, Any]]:
    return [message.model_dump(mode="json", exclude_defaults=True) for message in messages]


def conversation_messages(stored: Sequence[Any]) -> tuple[ChatMessage, ...]:
    return tuple(ChatMessage.model_validate(message) for message in stored)


def calls_made(messages: Iterable[ChatMessage]) -> dict[str, str]:
    """The ids of the tool calls the conversation's assistant turns made, to their names."""
    return {call.id: call.name for message in messages for call in message.tool_calls}
