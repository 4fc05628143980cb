"""The frames that cross the agent websocket, in both directions, and their encoding."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from paddler.protocol._jobs import FinishReason, JobRequest, Usage
from paddler.protocol._reports import CpuPath, EngineStats, SlotPrefixes
from paddler.protocol._tools import TokenLogprob, ToolCallDelta

PROTOCOL_VERSION = 3  # 3: Tokens, every running job's new output in one frame
AGENT_SOCKET_PATH = "/api/v1/agents/socket"
# The largest websocket frame either end accepts. The control plane may ask for less (its
# Welcome says how much); agents send large results in several frames below that.
MAX_FRAME_BYTES = 16 * 1024 * 1024

AgentState = Literal["loading", "ready", "draining", "error"]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: int = PROTOCOL_VERSION


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
    prefixes: SlotPrefixes | None = None  # what its slots' caches hold (None: not reported)


class Token(Message):
    """Some of a generation's output, as the agent parsed it: answer ``text``, ``reasoning``
    (the model's thoughts, when they are kept apart), pieces of tool calls, and the log
    probabilities of the tokens released with this frame when the job asked for them."""

    type: Literal["token"] = "token"
    job_id: str
    text: str = ""
    reasoning: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()


class Tokens(Message):
    """The new output of several jobs in one frame: an agent sends one per flush of its
    outbox (a decode step of all its slots, say) rather than a ``Token`` per job. Each piece
    means what the same ``Token`` alone would; a job's pieces are in order."""

    type: Literal["tokens"] = "tokens"
    pieces: tuple[Token, ...] = Field(min_length=1)


class Done(Message):
    type: Literal["done"] = "done"
    job_id: str
    finish_reason: FinishReason
    usage: Usage
    seconds_to_first_token: float | None = None
    seconds_total: float = 0.0


class EmbeddingsPart(Message):
    """Some vectors of an embedding job's answer, sent ahead of its ``Embeddings`` so that no
    frame is too large: ``first_index`` is the input the first vector belongs to."""

    type: Literal["embeddings_part"] = "embeddings_part"
    job_id: str
    first_index: int = Field(ge=0)
    vectors: tuple[tuple[float, ...], ...] = Field(min_length=1)


class Embeddings(Message):
    """The answer to an embedding job: one L2-normalised vector per input, in input order.

    When parts came first, ``vectors`` holds the vectors after theirs.
    """

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
    max_frame_bytes: int = Field(MAX_FRAME_BYTES, ge=1, le=MAX_FRAME_BYTES)


class Job(Message):
    type: Literal["job"] = "job"
    job_id: str
    request: JobRequest
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
    Hello | Status | Token | Tokens | Done | EmbeddingsPart | Embeddings | JobError | Goodbye,
    Field(discriminator="type"),
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
