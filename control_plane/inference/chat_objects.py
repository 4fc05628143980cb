"""The body of a non-streaming ``POST /v1/chat/completions`` answer."""

from __future__ import annotations

from control_plane.inference.generated_output import GeneratedOutput
from control_plane.inference.logprob_objects import chat_logprobs
from control_plane.inference.openai_objects import (
    Header,
    JsonObject,
    openai_finish_reason,
    usage_object,
)
from paddler.protocol import Done, ToolCall


def chat_completion(
    header: Header, output: GeneratedOutput, done: Done, *, logprobs: bool = False
) -> JsonObject:
    """The whole answer: ``content`` is null when it is only tool calls, ``reasoning_content``
    is there when the model thought, ``logprobs`` when they were asked for."""
    return {
        **header.fields("chat.completion"),
        "choices": [
            {
                "index": 0,
                "message": assistant_message(output),
                "logprobs": chat_logprobs(output.logprobs) if logprobs else None,
                "finish_reason": openai_finish_reason(done.finish_reason),
            }
        ],
        "usage": usage_object(done.usage),
    }


def assistant_message(output: GeneratedOutput) -> JsonObject:
    calls = output.tool_calls
    message: JsonObject = {
        "role": "assistant",
        "content": output.text or (None if calls else ""),
        "refusal": None,
    }
    if output.reasoning:
        message["reasoning_content"] = output.reasoning
    if calls:
        message["tool_calls"] = [tool_call_object(call) for call in calls]
    return message


def tool_call_object(call: ToolCall) -> JsonObject:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
