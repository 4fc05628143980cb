"""The JSON objects the Responses API answers with, shaped as OpenAI's so that its SDKs parse
them: the response, its output items and its usage."""

from __future__ import annotations

from typing import Any, Literal

from control_plane.errors import OpenAIError
from control_plane.inference.responses_api.requests import ResponsesCall
from control_plane.inference.responses_api.sampling import text_object
from control_plane.inference.responses_api.tools import tool_choice_object, tool_object
from paddler.protocol import ToolCall, Usage

JsonObject = dict[str, Any]
Status = Literal["in_progress", "completed", "incomplete", "failed"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]


def response_object(
    call: ResponsesCall,
    id: str,
    created_at: int,
    *,
    status: Status,
    output: list[JsonObject] | None = None,
    usage: Usage | None = None,
    error: OpenAIError | None = None,
) -> JsonObject:
    return {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": None if error is None else _error_object(error),
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": call.instructions,
        "max_output_tokens": call.max_output_tokens,
        "max_tool_calls": None,
        "model": call.model,
        "output": output or [],
        "parallel_tool_calls": call.parallel_tool_calls,
        "previous_response_id": call.previous_response_id,
        "reasoning": {"effort": None, "summary": None},
        "store": call.store,
        "temperature": call.temperature,
        "text": text_object(call.text_format),
        "tool_choice": tool_choice_object(call.tool_choice),
        "tools": [tool_object(tool) for tool in call.tools],
        "top_p": call.top_p,
        "truncation": "disabled",
        "usage": None if usage is None else usage_object(usage),
        "user": call.user,
        "metadata": call.metadata,
    }


def usage_object(usage: Usage) -> JsonObject:
    """Every prompt token an agent computes stays in its slot's KV cache for the next request
    to reuse: those are the cache writes, the reused ones the cached tokens."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_tokens,
            "cache_write_tokens": usage.prompt_tokens - usage.cached_tokens,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _error_object(error: OpenAIError) -> JsonObject:
    """Why a response failed; OpenAI's codes here are few: a request the model could not take
    (a prompt too long, say) is ``invalid_prompt``, anything else ``server_error``."""
    code = "invalid_prompt" if 400 <= error.status < 500 else "server_error"
    return {"code": code, "message": error.message}


def message_item(id: str, text: str, status: ItemStatus) -> JsonObject:
    return {
        "type": "message",
        "id": id,
        "status": status,
        "role": "assistant",
        "content": [] if status == "in_progress" else [output_text_part(text)],
    }


def output_text_part(text: str) -> JsonObject:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_item(id: str, text: str, status: ItemStatus) -> JsonObject:
    return {
        "type": "reasoning",
        "id": id,
        "summary": [],
        "content": [] if status == "in_progress" else [reasoning_part(text)],
        "status": status,
    }


def reasoning_part(text: str) -> JsonObject:
    return {"type": "reasoning_text", "text": text}


def function_call_item(id: str, call: ToolCall, status: ItemStatus) -> JsonObject:
    return {
        "type": "function_call",
        "id": id,
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": status,
    }
