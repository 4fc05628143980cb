"""Parse and validate the bodies of ``POST /v1/chat/completions`` and ``POST /v1/completions``.

The shape of a body is checked by the models of :mod:`control_plane.inference.generation_bodies`.
What pydantic cannot express nicely -- unions such as ``stop``, message ``content`` or
``tools``, and features we recognise but do not support -- is checked by hand afterwards.
Every failure is an :class:`OpenAIError` with status 400 whose ``param`` names the offending
field the way OpenAI does, e.g. ``messages[1].content``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from control_plane.errors import INVALID_VALUE, invalid_request, invalid_value
from control_plane.inference.bodies import json_object, validate_body
from control_plane.inference.chat_tools import requested_tools
from control_plane.inference.generation_bodies import (
    ChatCompletionBody,
    CompletionBody,
    GenerationBody,
)
from control_plane.inference.input_bounds import reject_lone_surrogates
from control_plane.inference.prompts import chat_message, prompt_text
from control_plane.inference.requested_sampling import requested_sampling
from control_plane.inference.tool_requests import check_answer_format, check_conversation
from control_plane.inference.validation import unsupported_parameter, unsupported_value
from paddler.protocol import GenerationRequest, ReasoningFormat

_REASONING_FORMATS: dict[str, ReasoningFormat] = {
    "auto": "auto",
    "deepseek": "auto",
    "none": "none",
}


@dataclass(frozen=True)
class InferenceCall:
    """A validated inference request, ready to be routed to an agent."""

    model: str
    stream: bool
    include_usage: bool
    request: GenerationRequest
    user: str | None = None  # the client's end user, which names a conversation for routing


def parse_chat_completion(body: bytes | str) -> InferenceCall:
    fields = validate_body(ChatCompletionBody, _text_object(body))
    _reject_unsupported_chat_features(fields)
    max_tokens = _chat_max_tokens(fields)
    messages = tuple(
        chat_message(message, f"messages[{index}]") for index, message in enumerate(fields.messages)
    )
    check_conversation(messages, param_of=lambda index: f"messages[{index}]")
    tools = requested_tools(fields)
    check_answer_format(
        tools.choice, constrained=fields.response_format is not None, param="response_format"
    )
    # only what the client set, so that a pool's default reasoning_format can fill the rest
    optional: dict[str, Any] = {}
    if fields.reasoning_format is not None:
        optional["reasoning_format"] = _REASONING_FORMATS[fields.reasoning_format]
    return InferenceCall(
        model=fields.model,
        stream=bool(fields.stream),
        include_usage=_include_usage(fields),
        request=GenerationRequest(
            kind="chat",
            messages=messages,
            sampling=requested_sampling(fields, max_tokens, fields.response_format),
            tools=tools.tools,
            tool_choice=tools.choice,
            parallel_tool_calls=tools.parallel,
            logprobs=_chat_logprobs(fields),
            **optional,
        ),
        user=fields.user,
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
            logprobs=fields.logprobs,
        ),
        user=fields.user,
    )


def _text_object(body: bytes | str) -> dict[str, object]:
    data = json_object(body)
    reject_lone_surrogates(data)
    return data


def _reject_unsupported_chat_features(fields: ChatCompletionBody) -> None:
    _reject_unsupported_common_features(fields)
    if fields.reasoning_effort is not None:
        # as OpenAI answers it for a model that does not reason: no effort can be chosen here
        raise unsupported_parameter(
            "reasoning_effort",
            "the reasoning effort of these models cannot be chosen; "
            "'reasoning_format' chooses whether thoughts come apart from the answer.",
        )
    if fields.response_format is not None and fields.grammar is not None:
        raise invalid_request(
            "'grammar' and 'response_format' both constrain the output; send only one.",
            param="grammar",
            code=INVALID_VALUE,
        )
    if fields.grammar is not None and fields.tools and fields.tool_choice != "none":
        raise invalid_request(
            "'grammar' cannot be combined with 'tools': the tool calls constrain the output.",
            param="grammar",
            code=INVALID_VALUE,
        )
    if fields.store:
        raise unsupported_parameter("store", "storing completions is not supported.")


def _reject_unsupported_completion_features(fields: CompletionBody) -> None:
    _reject_unsupported_common_features(fields)
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


def _chat_logprobs(fields: ChatCompletionBody) -> int | None:
    """``logprobs: true`` with ``top_logprobs`` alternatives per token (none by default)."""
    if fields.top_logprobs is not None and fields.logprobs is not True:
        raise invalid_value("top_logprobs", "'logprobs' must be true when 'top_logprobs' is given")
    if not fields.logprobs:
        return None
    return fields.top_logprobs or 0


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
