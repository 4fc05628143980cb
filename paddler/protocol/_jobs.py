"""What a job asks an agent to do (chat, completion, embeddings, with sampling), what it
used, and the codes an agent gives when it cannot do it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from paddler.protocol._tools import (
    MAX_TOP_LOGPROBS,
    FunctionTool,
    ReasoningFormat,
    ToolCall,
    ToolChoice,
)

JobKind = Literal["chat", "completion"]
FinishReason = Literal["stop", "length", "tool_calls", "cancelled"]


class ChatMessage(BaseModel):
    """One turn of a conversation. An assistant turn may carry the ``tool_calls`` it made
    (its ``content`` then often empty); a ``tool`` turn answers the call ``tool_call_id``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str = ""
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


class ResponseFormat(BaseModel):
    """Constrain the output to JSON: any JSON object, or one matching ``json_schema``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["json_object", "json_schema"]
    json_schema: dict[str, object] | None = None


class SamplingParams(BaseModel):
    """How to pick tokens; the defaults leave the model's distribution untouched.

    ``top_k`` 0 and ``min_p`` 0 are off; ``repeat_penalty`` 1 is off. ``logit_bias`` maps
    token ids to a bias added to their logits (-100 bans a token). ``grammar`` is GBNF text;
    ``response_format`` is turned into a grammar by the agent.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    logit_bias: dict[int, float] = Field(default_factory=dict)
    grammar: str | None = None
    response_format: ResponseFormat | None = None


class GenerationRequest(BaseModel):
    """What an agent needs to run one job: either chat messages or a raw prompt.

    Chats may offer ``tools``; ``tool_choice`` says whether the model may, must, or must not
    call them (or must call one by name). ``logprobs`` None: none reported; N: each token's
    log probability with its N most likely alternatives.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: JobKind
    messages: tuple[ChatMessage, ...] = ()
    prompt: str = ""
    sampling: SamplingParams = SamplingParams()
    tools: tuple[FunctionTool, ...] = ()
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True
    reasoning_format: ReasoningFormat = "auto"
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)


class EmbeddingRequest(BaseModel):
    """Embed each of ``inputs`` (non-empty texts) into one vector, in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["embedding"] = "embedding"
    inputs: tuple[str, ...] = Field(min_length=1)


JobRequest = Annotated[GenerationRequest | EmbeddingRequest, Field(discriminator="kind")]


class Usage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens whose KV was reused rather than computed
    reasoning_tokens: int = 0  # completion tokens that were the model's thoughts

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# codes of JobError: why an agent could not serve a job
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
INVALID_MESSAGES = "invalid_messages"
NO_FREE_SLOT = "no_free_slot"
ENGINE_FAILURE = "engine_failure"
INVALID_GRAMMAR = "invalid_grammar"  # the request's grammar does not parse
INVALID_JSON_SCHEMA = "invalid_json_schema"  # its response_format schema makes no grammar
INVALID_TOOLS = "invalid_tools"  # a tool's parameters schema makes no grammar
INVALID_LOGIT_BIAS = "invalid_logit_bias"  # a token id the model does not have
KV_CACHE_FULL = "kv_cache_full"  # the context ran out of room while the job was running
EMBEDDINGS_DISABLED = "embeddings_disabled"  # an embedding job reached an agent without them
