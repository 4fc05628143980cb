"""Parse and validate the bodies of ``POST /v1/chat/completions`` and ``POST /v1/completions``.

The shape of a body is checked by the models of :mod:`control_plane.inference.generation_bodies`.
What pydantic cannot express nicely -- unions such as ``stop`` or message ``content``, and
features we recognise but do not support -- is checked by hand afterwards. Every failure is an
:class:`OpenAIError` with status 400 whose ``param`` names the offending field the way OpenAI
does, e.g. ``messages[1].content``.
"""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.errors import INVALID_VALUE, invalid_request
from control_plane.inference.bodies import json_object, validate_body
from control_plane.inference.generation_bodies import (
    ChatCompletionBody,
    CompletionBody,
    GenerationBody,
)
from control_plane.inference.input_bounds import reject_lone_surrogates
from control_plane.inference.prompts import chat_message, prompt_text
from control_plane.inference.requested_sampling import requested_sampling
from control_plane.inference.validation import unsupported_parameter, unsupported_value
from paddler.protocol import GenerationRequest


@dataclass(frozen=True)
class InferenceCall:
    """A validated inference request, ready to be routed to an agent."""

    model: str
    stream: bool
    include_usage: bool
    request: GenerationRequest


def parse_chat_completion(body: bytes | str) -> InferenceCall:
    fields = validate_body(ChatCompletionBody, _text_object(body))
    _reject_unsupported_chat_features(fields)
    max_tokens = _chat_max_tokens(fields)
    messages = tuple(
        chat_message(message, f"messages[{index}]") for index, message in enumerate(fields.messages)
    )
    return InferenceCall(
        model=fields.model,
        stream=bool(fields.stream),
        include_usage=_include_usage(fields),
        request=GenerationRequest(
            kind="chat",
            messages=messages,
            sampling=requested_sampling(fields, max_tokens, fields.response_format),
        ),
    )


def parse_completion(body: bytes | str) -> InferenceCall:
    fields = validate_body(CompletionBody, _text_object(body))
    _reject_unsupported_completion_features(fields)
    return InferenceCall(
        model=fields.model,
        stream=bool(fields.stream),
        include_usage=_include_usage(fields),
        request=GenerationRequest(
            kind="completion",
            prompt=prompt_text(fields.prompt),
            sampling=requested_sampling(fields, fields.max_tokens),
        ),
    )


def _text_object(body: bytes | str) -> dict[str, object]:
    data = json_object(body)
    reject_lone_surrogates(data)
    return data


def _reject_unsupported_chat_features(fields: ChatCompletionBody) -> None:
    _reject_unsupported_common_features(fields)
    if fields.tools:
        raise unsupported_parameter("tools", "tool calling is not supported.")
    if fields.functions:
        raise unsupported_parameter("functions", "function calling is not supported.")
    if fields.tool_choice not in (None, "none"):
        raise unsupported_parameter(
            "tool_choice", "tool calling is not supported, so it may only be 'none'."
        )
    if fields.function_call not in (None, "none"):
        raise unsupported_parameter(
            "function_call",
            "function calling is not supported, so it may only be 'none'.",
        )
    if fields.logprobs:
        raise unsupported_parameter("logprobs", "log probabilities are not supported.")
    if fields.top_logprobs:
        raise unsupported_parameter("top_logprobs", "log probabilities are not supported.")
    if fields.response_format is not None and fields.grammar is not None:
        raise invalid_request(
            "'grammar' and 'response_format' both constrain the output; send only one.",
            param="grammar",
            code=INVALID_VALUE,
        )
    if fields.store:
        raise unsupported_parameter("store", "storing completions is not supported.")


def _reject_unsupported_completion_features(fields: CompletionBody) -> None:
    _reject_unsupported_common_features(fields)
    if fields.logprobs is not None:
        raise unsupported_parameter("logprobs", "log probabilities are not supported.")
    if fields.echo:
        raise unsupported_parameter("echo", "echoing the prompt is not supported.")
    if fields.best_of is not None and fields.best_of > 1:
        raise unsupported_value("best_of", "only best_of=1 is supported.")
    if fields.suffix:
        raise unsupported_parameter("suffix", "suffixes (insertion) are not supported.")


def _reject_unsupported_common_features(fields: GenerationBody) -> None:
    if fields.n is not None and fields.n != 1:
        raise unsupported_value("n", "only n=1 is supported.")
    if fields.stream_options is not None and not fields.stream:
        raise invalid_request(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code=INVALID_VALUE,
        )


def _chat_max_tokens(fields: ChatCompletionBody) -> int | None:
    """``max_completion_tokens`` is the newer name of ``max_tokens``; accept either."""
    if fields.max_completion_tokens is None:
        return fields.max_tokens
    if fields.max_tokens not in (None, fields.max_completion_tokens):
        raise invalid_request(
            "'max_tokens' and 'max_completion_tokens' are aliases; when both are given "
            "they must be equal.",
            param="max_completion_tokens",
            code=INVALID_VALUE,
        )
    return fields.max_completion_tokens


def _include_usage(fields: GenerationBody) -> bool:
    options = fields.stream_options
    return bool(fields.stream and options is not None and options.include_usage)
