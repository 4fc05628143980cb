"""The bodies of ``POST /v1/chat/completions`` and ``POST /v1/completions``, as pydantic models.

Checked strictly (no coercion: ``"stream": 1`` and ``"temperature": "hot"`` are rejected). A
field typed ``object`` is a union pydantic cannot word nicely; it is checked by hand later.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from control_plane.inference.bodies import StrictBody
from control_plane.serving.desired_state import (
    MaxTokens,
    MinP,
    Penalty,
    RepeatPenalty,
    Temperature,
    TopK,
    TopP,
)
from paddler.protocol import MAX_TOP_LOGPROBS

# OpenAI's limit on the legacy endpoint's ``logprobs`` (alternatives per token)
MAX_COMPLETION_LOGPROBS = 5


class StreamOptions(StrictBody):
    include_usage: bool | None = None


class JsonSchemaFormat(StrictBody):
    name: str = Field(min_length=1, max_length=64)
    schema_: dict[str, object] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class ResponseFormatBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    type: str
    json_schema: JsonSchemaFormat | None = None


class MessageBody(StrictBody):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    # a string or a list of content parts; absent or null only beside an assistant's tool_calls
    content: object = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: object = None
    function_call: object = None
    refusal: str | None = None


class GenerationBody(StrictBody):
    """Fields shared by chat completions and (legacy) completions."""

    model: str = Field(min_length=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    stop: object = None  # a string or a list of strings
    seed: int | None = None
    n: int | None = Field(default=None, ge=1)
    user: str | None = None
    logit_bias: dict[str, float] | None = None
    # llama.cpp's extensions, as its own server names them
    top_k: TopK | None = None
    min_p: MinP | None = None
    repeat_penalty: RepeatPenalty | None = None
    grammar: str | None = Field(default=None, min_length=1)


class ChatCompletionBody(GenerationBody):
    messages: list[MessageBody] = Field(min_length=1)
    max_completion_tokens: MaxTokens | None = None
    tools: object = None
    functions: object = None
    tool_choice: object = None
    function_call: object = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: ResponseFormatBody | None = None
    # llama-server's name and values; "deepseek" is its older name of "auto"
    reasoning_format: Literal["auto", "none", "deepseek"] | None = None
    reasoning_effort: object = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None


class CompletionBody(GenerationBody):
    prompt: object  # a string or a list holding one string
    logprobs: int | None = Field(default=None, ge=0, le=MAX_COMPLETION_LOGPROBS)
    echo: bool | None = None
    best_of: int | None = Field(default=None, ge=1)
    suffix: str | None = None
