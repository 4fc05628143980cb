"""What a model is given to continue: chat messages (their text, and the tool calls and results
of earlier turns), or a completion's prompt."""

from __future__ import annotations

from collections.abc import Callable

from control_plane.errors import invalid_value
from control_plane.inference.bodies import non_empty_string
from control_plane.inference.generation_bodies import MessageBody
from control_plane.inference.validation import (
    invalid_type,
    missing_parameter,
    reject_unknown_keys,
    required_field,
    unsupported_parameter,
    unsupported_value,
)
from paddler.protocol import ChatMessage, ToolCall


def chat_message(message: MessageBody, param: str) -> ChatMessage:
    """One message of a chat. An assistant message may carry the ``tool_calls`` it made (its
    ``content`` then may be null or absent); a ``tool`` message answers ``tool_call_id``."""
    if message.function_call is not None:
        raise unsupported_parameter(
            f"{param}.function_call",
            "the deprecated function_call form of past calls is not supported; "
            "send them as 'tool_calls'.",
        )
    tool_calls = _tool_calls(message, f"{param}.tool_calls")
    if message.content is None and not tool_calls:
        if "content" not in message.model_fields_set:
            raise missing_parameter(f"{param}.content")
        raise invalid_type(f"{param}.content", "a string or an array of content parts", None)
    content = "" if message.content is None else _message_text(message.content, f"{param}.content")
    return ChatMessage(
        role=message.role,
        content=content,
        name=message.name,
        tool_calls=tool_calls,
        tool_call_id=message.tool_call_id if message.role == "tool" else None,
    )


def _tool_calls(message: MessageBody, param: str) -> tuple[ToolCall, ...]:
    raw = message.tool_calls
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise invalid_type(param, "an array", raw)
    if raw and message.role != "assistant":
        raise invalid_value(param, "only assistant messages carry tool calls")
    return tuple(_tool_call(call, f"{param}[{index}]") for index, call in enumerate(raw))


def _tool_call(call: object, param: str) -> ToolCall:
    if not isinstance(call, dict):
        raise invalid_type(param, "an object", call)
    reject_unknown_keys(call, ("id", "type", "function"), param)
    call_id = non_empty_string(required_field(call, "id", param), f"{param}.id")
    call_type = required_field(call, "type", param)
    if call_type != "function":
        raise invalid_value(f"{param}.type", "expected 'function'")
    function = required_field(call, "function", param)
    if not isinstance(function, dict):
        raise invalid_type(f"{param}.function", "an object", function)
    param = f"{param}.function"
    reject_unknown_keys(function, ("name", "arguments"), param)
    name = non_empty_string(required_field(function, "name", param), f"{param}.name")
    arguments = required_field(function, "arguments", param)
    if not isinstance(arguments, str):
        raise invalid_type(f"{param}.arguments", "a string (JSON text)", arguments)
    return ToolCall(id=call_id, name=name, arguments=arguments)


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
    return joined_parts(content, param, _part_text)


def joined_parts(
    content: object,
    param: str,
    part_text: Callable[[object, str], str],
    *,
    may_be_empty: bool = False,
) -> str:
    """The text of a message: a plain string, or the text of its parts (each read by
    ``part_text(part, param)``) joined by newlines."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid_type(param, "a string or an array of content parts", content)
    if not content and not may_be_empty:
        raise invalid_value(param, "expected a string or a non-empty array of content parts")
    return "\n".join(part_text(part, f"{param}[{index}]") for index, part in enumerate(content))


def _part_text(part: object, param: str) -> str:
    if not isinstance(part, dict):
        raise invalid_type(param, "an object", part)
    part_type = required_field(part, "type", param)
    if not isinstance(part_type, str):
        raise invalid_type(f"{param}.type", "a string", part_type)
    if part_type != "text":
        raise unsupported_value(
            f"{param}.type",
            f"content parts of type '{part_type}' are not supported; only 'text' parts are.",
        )
    text = required_field(part, "text", param)
    if not isinstance(text, str):
        raise invalid_type(f"{param}.text", "a string", text)
    return text
