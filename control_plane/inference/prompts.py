"""What a model is given to continue: chat messages as plain text, or a completion's prompt."""

from __future__ import annotations

from control_plane.errors import invalid_value
from control_plane.inference.bodies import non_empty_string
from control_plane.inference.generation_bodies import MessageBody
from control_plane.inference.validation import (
    invalid_type,
    missing_parameter,
    unsupported_parameter,
    unsupported_value,
)
from paddler.protocol import ChatMessage


def chat_message(message: MessageBody, param: str) -> ChatMessage:
    if message.tool_calls:
        raise unsupported_parameter(f"{param}.tool_calls", "tool calling is not supported.")
    if message.function_call is not None:
        raise unsupported_parameter(f"{param}.function_call", "function calling is not supported.")
    return ChatMessage(
        role=message.role, content=_message_text(message.content, f"{param}.content")
    )


def prompt_text(prompt: object) -> str:
    if not isinstance(prompt, list):
        return non_empty_string(prompt, "prompt")
    if not prompt:
        raise invalid_value("prompt", "expected a non-empty string")
    if any(isinstance(item, int | list) for item in prompt):
        raise unsupported_value("prompt", "prompts given as token ids are not supported.")
    if len(prompt) != 1:
        raise unsupported_value(
            "prompt", "batched prompts are not supported; send a string or an array of one string."
        )
    return non_empty_string(prompt[0], "prompt[0]")


def _message_text(content: object, param: str) -> str:
    """The text of a message: a plain string, or its text parts joined by newlines."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid_type(param, "a string or an array of content parts", content)
    if not content:
        raise invalid_value(param, "expected a string or a non-empty array of content parts")
    return "\n".join(_part_text(part, f"{param}[{index}]") for index, part in enumerate(content))


def _part_text(part: object, param: str) -> str:
    if not isinstance(part, dict):
        raise invalid_type(param, "an object", part)
    part_type = _required(part, "type", param)
    if not isinstance(part_type, str):
        raise invalid_type(f"{param}.type", "a string", part_type)
    if part_type != "text":
        raise unsupported_value(
            f"{param}.type",
            f"content parts of type '{part_type}' are not supported; only 'text' parts are.",
        )
    text = _required(part, "text", param)
    if not isinstance(text, str):
        raise invalid_type(f"{param}.text", "a string", text)
    return text


def _required(container: dict[str, object], key: str, param: str) -> object:
    if key not in container:
        raise missing_parameter(f"{param}.{key}")
    return container[key]
