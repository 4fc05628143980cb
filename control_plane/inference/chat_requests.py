"""Parse and validate the bodies of ``POST /v1/chat/completions`` and ``POST /v1/completions``.

The shape of a body is checked by strict pydantic models (no coercion: ``"stream": 1`` and
``"temperature": "hot"`` are rejected). What pydantic cannot express nicely -- unions such as
``stop`` or message ``content``, and features we recognise but do not support -- is checked by
hand afterwards. Every failure is an :class:`OpenAIError` with status 400 whose ``param`` names
the offending field the way OpenAI does, e.g. ``messages[1].content``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from control_plane.errors import invalid_request
from control_plane.inference.bodies import (
    StrictBody,
    json_object,
    non_empty_string,
    validate_body,
)
from control_plane.inference.validation import (
    INVALID_VALUE,
    invalid_type,
    missing_parameter,
    short_json,
    too_many,
    unsupported_parameter,
    unsupported_value,
)
from paddler.protocol import ChatMessage, GenerationRequest, ResponseFormat, SamplingParams

MAX_STOP_SEQUENCES = 4
MAX_LOGIT_BIAS_ENTRIES = 1024


@dataclass(frozen=True)
class InferenceCall:
    """A validated inference request, ready to be routed to an agent."""

    model: str
    stream: bool
    include_usage: bool
    request: GenerationRequest


def parse_chat_completion(body: bytes | str) -> InferenceCall:
    fields = validate_body(_ChatCompletionBody, json_object(body))
    _reject_unsupported_chat_features(fields)
    max_tokens = _chat_max_tokens(fields)
    messages = tuple(
        _chat_message(message, f"messages[{index}]")
        for index, message in enumerate(fields.messages)
    )
    return InferenceCall(
        model=fields.model,
        stream=bool(fields.stream),
        include_usage=_include_usage(fields),
        request=GenerationRequest(
            kind="chat",
            messages=messages,
            sampling=_sampling(fields, max_tokens, fields.response_format),
        ),
    )


def parse_completion(body: bytes | str) -> InferenceCall:
    fields = validate_body(_CompletionBody, json_object(body))
    _reject_unsupported_completion_features(fields)
    prompt = _prompt_text(fields.prompt)
    return InferenceCall(
        model=fields.model,
        stream=bool(fields.stream),
        include_usage=_include_usage(fields),
        request=GenerationRequest(
            kind="completion", prompt=prompt, sampling=_sampling(fields, fields.max_tokens)
        ),
    )


# -- request body models ----------------------------------------------------------------------


class _StreamOptions(StrictBody):
    include_usage: bool | None = None


class _JsonSchemaFormat(StrictBody):
    name: str = Field(min_length=1, max_length=64)
    schema_: dict[str, object] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class _ResponseFormat(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    type: str
    json_schema: _JsonSchemaFormat | None = None


class _MessageBody(StrictBody):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: object  # a string or a list of content parts; checked by ``_message_text``
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: object = None
    function_call: object = None
    refusal: str | None = None


class _GenerationBody(StrictBody):
    """Fields shared by chat completions and (legacy) completions."""

    model: str = Field(min_length=1)
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    stop: object = None  # a string or a list of strings; checked by ``_stop_sequences``
    seed: int | None = None
    n: int | None = Field(default=None, ge=1)
    user: str | None = None
    logit_bias: dict[str, float] | None = None
    # llama.cpp's extensions, as its own server names them
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repeat_penalty: float | None = Field(default=None, gt=0, le=10)
    grammar: str | None = Field(default=None, min_length=1)


class _ChatCompletionBody(_GenerationBody):
    messages: list[_MessageBody] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: object = None
    functions: object = None
    tool_choice: object = None
    function_call: object = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0)
    response_format: _ResponseFormat | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None


class _CompletionBody(_GenerationBody):
    prompt: object  # a string or a list holding one string; checked by ``_prompt_text``
    logprobs: int | None = Field(default=None, ge=0)
    echo: bool | None = None
    best_of: int | None = Field(default=None, ge=1)
    suffix: str | None = None


# -- parsing ---------------------------------------------------------------------------------


def _reject_unsupported_chat_features(fields: _ChatCompletionBody) -> None:
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


def _reject_unsupported_completion_features(fields: _CompletionBody) -> None:
    _reject_unsupported_common_features(fields)
    if fields.logprobs is not None:
        raise unsupported_parameter("logprobs", "log probabilities are not supported.")
    if fields.echo:
        raise unsupported_parameter("echo", "echoing the prompt is not supported.")
    if fields.best_of is not None and fields.best_of > 1:
        raise unsupported_value("best_of", "only best_of=1 is supported.")
    if fields.suffix:
        raise unsupported_parameter("suffix", "suffixes (insertion) are not supported.")


def _reject_unsupported_common_features(fields: _GenerationBody) -> None:
    if fields.n is not None and fields.n != 1:
        raise unsupported_value("n", "only n=1 is supported.")
    if fields.stream_options is not None and not fields.stream:
        raise invalid_request(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code=INVALID_VALUE,
        )


def _response_format(response_format: _ResponseFormat | None) -> ResponseFormat | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return ResponseFormat(type="json_object")
    if response_format.type == "json_schema":
        if response_format.json_schema is None:
            raise missing_parameter("response_format.json_schema")
        return ResponseFormat(type="json_schema", json_schema=response_format.json_schema.schema_)
    raise invalid_request(
        f"Invalid value for 'response_format.type': expected one of 'text', 'json_object', "
        f"'json_schema', but got {short_json(response_format.type)} instead.",
        param="response_format.type",
        code=INVALID_VALUE,
    )


def _logit_bias(bias: dict[str, float] | None) -> dict[int, float]:
    """OpenAI's ``logit_bias``: token ids (as JSON object keys) to a bias in [-100, 100]."""
    if not bias:
        return {}
    if len(bias) > MAX_LOGIT_BIAS_ENTRIES:
        raise too_many("logit_bias", MAX_LOGIT_BIAS_ENTRIES, len(bias), "entries")
    parsed: dict[int, float] = {}
    for key, value in bias.items():
        if not key.isascii() or not key.isdigit():
            raise invalid_request(
                f"Invalid key in 'logit_bias': {short_json(key)} is not a token id; "
                "keys must be non-negative integers written as strings.",
                param="logit_bias",
                code=INVALID_VALUE,
            )
        if not -100 <= value <= 100:
            raise invalid_request(
                f"Invalid value for 'logit_bias[{key}]': expected a number between -100 and "
                f"100, but got {short_json(value)} instead.",
                param=f"logit_bias[{key}]",
                code=INVALID_VALUE,
            )
        parsed[int(key)] = value
    return parsed


def _chat_max_tokens(fields: _ChatCompletionBody) -> int | None:
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


def _include_usage(fields: _GenerationBody) -> bool:
    options = fields.stream_options
    return bool(fields.stream and options is not None and options.include_usage)


def _sampling(
    fields: _GenerationBody,
    max_tokens: int | None,
    response_format: _ResponseFormat | None = None,
) -> SamplingParams:
    # only the values the client gave are set, so a pool's inference defaults can fill the rest
    given = {
        "max_tokens": max_tokens,
        "temperature": fields.temperature,
        "top_p": fields.top_p,
        "top_k": fields.top_k,
        "min_p": fields.min_p,
        "presence_penalty": fields.presence_penalty,
        "frequency_penalty": fields.frequency_penalty,
        "repeat_penalty": fields.repeat_penalty,
    }
    return SamplingParams(
        **{name: value for name, value in given.items() if value is not None},
        seed=fields.seed,
        stop=_stop_sequences(fields.stop),
        logit_bias=_logit_bias(fields.logit_bias),
        grammar=fields.grammar,
        response_format=_response_format(response_format),
    )


def _stop_sequences(stop: object) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (non_empty_string(stop, "stop"),)
    if not isinstance(stop, list):
        raise invalid_type("stop", "a string or an array of strings", stop)
    if len(stop) > MAX_STOP_SEQUENCES:
        raise too_many("stop", MAX_STOP_SEQUENCES, len(stop), "stop sequences")
    return tuple(non_empty_string(item, f"stop[{index}]") for index, item in enumerate(stop))


def _chat_message(message: _MessageBody, param: str) -> ChatMessage:
    if message.tool_calls:
        raise unsupported_parameter(f"{param}.tool_calls", "tool calling is not supported.")
    if message.function_call is not None:
        raise unsupported_parameter(f"{param}.function_call", "function calling is not supported.")
    return ChatMessage(
        role=message.role, content=_message_text(message.content, f"{param}.content")
    )


def _message_text(content: object, param: str) -> str:
    """The text of a message: a plain string, or its text parts joined by newlines."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid_type(param, "a string or an array of content parts", content)
    if not content:
        raise invalid_request(
            f"Invalid value for '{param}': expected a string or a non-empty array of "
            "content parts.",
            param=param,
            code=INVALID_VALUE,
        )
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


def _prompt_text(prompt: object) -> str:
    if not isinstance(prompt, list):
        return non_empty_string(prompt, "prompt")
    if not prompt:
        raise invalid_request(
            "Invalid value for 'prompt': expected a non-empty string.",
            param="prompt",
            code=INVALID_VALUE,
        )
    if any(isinstance(item, int | list) for item in prompt):
        raise unsupported_value("prompt", "prompts given as token ids are not supported.")
    if len(prompt) != 1:
        raise unsupported_value(
            "prompt", "batched prompts are not supported; send a string or an array of one string."
        )
    return non_empty_string(prompt[0], "prompt[0]")


def _required(container: dict[str, object], key: str, param: str) -> object:
    if key not in container:
        raise missing_parameter(f"{param}.{key}")
    return container[key]
