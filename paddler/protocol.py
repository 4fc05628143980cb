"""The wire protocol between agents and the control plane.

Every message that crosses the agent websocket is defined here and nowhere else. Frames are
JSON text; each carries a ``type`` discriminator and the protocol version.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PROTOCOL_VERSION = 1
AGENT_SOCKET_PATH = "/api/v1/agents/socket"

AgentState = Literal["loading", "ready", "draining", "error"]
JobKind = Literal["chat", "completion"]
FinishReason = Literal["stop", "length", "cancelled"]
CpuRepack = Literal["auto", "on", "off"]  # may llama.cpp use extra CPU buffer types


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: int = PROTOCOL_VERSION


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str


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
    """What an agent needs to run one job: either chat messages or a raw prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: JobKind
    messages: tuple[ChatMessage, ...] = ()
    prompt: str = ""
    sampling: SamplingParams = SamplingParams()


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

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# codes of JobError: why an agent could not serve a job
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
INVALID_MESSAGES = "invalid_messages"
NO_FREE_SLOT = "no_free_slot"
ENGINE_FAILURE = "engine_failure"
INVALID_GRAMMAR = "invalid_grammar"  # the grammar or JSON schema cannot constrain sampling
INVALID_LOGIT_BIAS = "invalid_logit_bias"  # a token id the model does not have
KV_CACHE_FULL = "kv_cache_full"  # the context ran out of room while the job was running
EMBEDDINGS_DISABLED = "embeddings_disabled"  # an embedding job reached an agent without them


class CpuPath(BaseModel):
    """How llama.cpp computes on the agent's CPU: the features that choose its kernels, and
    whether the model's weights may go to extra buffer types (AMX, repacked layouts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: tuple[str, ...] = ()  # of avx2, avx512f, avx512_vnni, avx512_bf16, amx_*
    cpu_repack: CpuRepack = "auto"  # the agent's setting
    extra_buffers: bool = True  # what the setting resolved to on this CPU
    reason: str = ""  # "amx", "no amx" (auto) or "setting"
    model_buffers: tuple[str, ...] = ()  # buffer types the loaded weights got (CPU_REPACK…)

    @property
    def summary(self) -> str:
        """One line for people: ``repack off (amx)``, ``repack on (no amx)``."""
        text = f"repack {'on' if self.extra_buffers else 'off'} ({self.reason})"
        if self.model_buffers:
            text += f"; weights in {', '.join(self.model_buffers)}"
        return text


# agent -> control plane


class Hello(Message):
    type: Literal["hello"] = "hello"
    agent_id: str
    name: str
    version: str
    slots: int = Field(ge=1)
    model: str
    model_source: str
    pool: str
    instance_id: str | None = None
    embeddings: bool = False  # the agent serves embedding jobs too
    applied_version: int = Field(0, ge=0)  # the pool's desired-state version it runs (0: none)
    cpu: CpuPath | None = None  # what the model will run on; model_buffers once it is loaded


class EngineStats(BaseModel):
    """What the agent's engine is doing, averaged since the previous status."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens_per_second: float = 0.0  # generated tokens, all sequences together
    active_sequences: int = 0
    kv_cells_used: int = 0
    kv_cells_total: int = 0
    prompt_cache_hit_rate: float | None = None  # reused / all prompt tokens; None before any


class Status(Message):
    type: Literal["status"] = "status"
    state: AgentState
    slots_busy: int = Field(ge=0)
    slots_total: int = Field(ge=0)
    model: str
    download_progress: float | None = None
    issues: tuple[str, ...] = ()
    engine: EngineStats | None = None
    applied_version: int = Field(0, ge=0)  # the last desired-state version it has applied
    cpu: CpuPath | None = None


class Token(Message):
    type: Literal["token"] = "token"
    job_id: str
    text: str


class Done(Message):
    type: Literal["done"] = "done"
    job_id: str
    finish_reason: FinishReason
    usage: Usage
    seconds_to_first_token: float | None = None
    seconds_total: float = 0.0


class Embeddings(Message):
    """The answer to an embedding job: one L2-normalised vector per input, in input order."""

    type: Literal["embeddings"] = "embeddings"
    job_id: str
    vectors: tuple[tuple[float, ...], ...]
    prompt_tokens: int = Field(ge=0)


class JobError(Message):
    type: Literal["error"] = "error"
    job_id: str
    code: str
    message: str


class Goodbye(Message):
    """The agent is leaving on purpose: the control plane closes once it has read everything."""

    type: Literal["goodbye"] = "goodbye"
    reason: str = ""


# control plane -> agent


class Welcome(Message):
    type: Literal["welcome"] = "welcome"
    pool: str
    heartbeat_seconds: float


class Job(Message):
    type: Literal["job"] = "job"
    job_id: str
    request: JobRequest
    deadline: float | None = None
    request_id: str = ""  # the client request's id (X-Request-Id), for the agent's logs


class Cancel(Message):
    type: Literal["cancel"] = "cancel"
    job_id: str


class Drain(Message):
    type: Literal["drain"] = "drain"


class DesiredState(Message):
    """What the pool's agents should run. An agent whose model, slots, chat template or context
    differ drains (finishes its jobs, takes none), unloads, fetches and loads the new model and
    reports ``applied_version``; otherwise it adopts the version at once.

    ``chat_template`` None: the agent's own (its ``--chat-template`` or the model's);
    ``context_size`` None: the agent's ``--context-size``.
    """

    type: Literal["desired_state"] = "desired_state"
    version: int = Field(ge=1)
    model_source: str = Field(min_length=1)
    slots: int = Field(ge=1)
    chat_template: str | None = None
    context_size: int | None = Field(default=None, ge=1)


AgentMessage = Annotated[
    Hello | Status | Token | Done | Embeddings | JobError | Goodbye, Field(discriminator="type")
]
ControlPlaneMessage = Annotated[
    Welcome | Job | Cancel | Drain | DesiredState, Field(discriminator="type")
]

_agent_messages: TypeAdapter[AgentMessage] = TypeAdapter(AgentMessage)
_control_plane_messages: TypeAdapter[ControlPlaneMessage] = TypeAdapter(ControlPlaneMessage)


def encode(message: Message) -> str:
    return message.model_dump_json()


def decode_agent_message(frame: str | bytes) -> AgentMessage:
    """Parse a frame an agent sent; raises ``pydantic.ValidationError`` if it is not one."""
    return _agent_messages.validate_json(frame)


def decode_control_plane_message(frame: str | bytes) -> ControlPlaneMessage:
    """Parse a frame the control plane sent; raises ``pydantic.ValidationError``."""
    return _control_plane_messages.validate_json(frame)
