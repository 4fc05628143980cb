"""A chat's messages and tools as its template gets them, in the chosen tool-call format.

Templates that render ``tools`` get them (and the conversation's calls and results) as
they are; others get the tool definitions and the format's instructions in the system
message, earlier calls written out in the format, and results as user turns.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Sequence
from dataclasses import dataclass

from agent.chat_format.call_format import CallFormat, tool_definitions
from agent.chat_format.detect import TemplateFormat
from paddler.protocol import ChatMessage, FunctionTool

__all__ = ["PromptInputs", "prompt_inputs"]

_MISTRAL_ID_LENGTH = 9  # Mistral's templates refuse call ids of any other length
_ALPHANUMERIC = string.ascii_letters + string.digits


@dataclass(frozen=True)
class PromptInputs:
    messages: tuple[ChatMessage, ...]
    tools: list[dict[str, object]] | None = None  # for the template's ``tools``


def prompt_inputs(
    messages: Sequence[ChatMessage],
    tools: Sequence[FunctionTool],
    *,
    template: TemplateFormat,
    call_format: CallFormat,
    offered: bool,
    required: bool,
    parallel: bool,
) -> PromptInputs:
    """``offered``: the tools are shown to the model (tool_choice is not "none")."""
    if template.renders_tools:
        if template.style == "mistral":
            messages = [_short_ids(message) for message in messages]
        native = template.style != "generic"
        if native or not offered:
            return PromptInputs(tuple(messages), tool_definitions(tools) if offered else None)
    else:
        messages = _written_out(messages, call_format)
    if not offered:
        return PromptInputs(tuple(messages))
    instructions = call_format.instructions(tools, required=required, parallel=parallel)
    return PromptInputs(_with_system_text(messages, instructions))


def _with_system_text(messages: Sequence[ChatMessage], text: str) -> tuple[ChatMessage, ...]:
    if messages and messages[0].role in ("system", "developer"):
        first = messages[0]
        joined = f"{first.content}\n\n{text}" if first.content else text
        return (first.model_copy(update={"content": joined}), *messages[1:])
    return (ChatMessage(role="system", content=text), *messages)


def _written_out(messages: Sequence[ChatMessage], call_format: CallFormat) -> list[ChatMessage]:
    """Calls and results as plain turns, for a template that knows neither."""
    names: dict[str, str] = {}
    written: list[ChatMessage] = []
    for message in messages:
        if message.tool_calls:
            names.update((call.id, call.name) for call in message.tool_calls)
            text = call_format.call_text(message.tool_calls)
            content = f"{message.content}\n{text}" if message.content else text
            written.append(ChatMessage(role="assistant", content=content))
        elif message.role == "tool":
            name = message.name or names.get(message.tool_call_id or "", "")
            written.append(ChatMessage(role="user", content=call_format.result_text(message, name)))
        else:
            written.append(message)
    return written


def _short_ids(message: ChatMessage) -> ChatMessage:
    if message.tool_calls:
        calls = tuple(
            call.model_copy(update={"id": _short_id(call.id)}) for call in message.tool_calls
        )
        return message.model_copy(update={"tool_calls": calls})
    if message.tool_call_id is not None:
        return message.model_copy(update={"tool_call_id": _short_id(message.tool_call_id)})
    return message


def _short_id(call_id: str) -> str:
    """The same nine alphanumerics for the same id, wherever it appears in a conversation."""
    digest = hashlib.sha256(call_id.encode()).digest()
    return "".join(_ALPHANUMERIC[byte % len(_ALPHANUMERIC)] for byte in digest[:_MISTRAL_ID_LENGTH])
