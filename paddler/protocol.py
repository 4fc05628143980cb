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


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: int = PROTOCOL_VERSION


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str


class SamplingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


class GenerationRequest(BaseModel):
    """What an agent needs to run one job: either chat messages or a raw prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: JobKind
    messages: tuple[ChatMessage, ...] = ()
    prompt: str = ""
    sampling: SamplingParams = SamplingParams()


class Usage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


# codes of JobError: why an agent could not serve a job
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
INVALID_MESSAGES = "invalid_messages"
NO_FREE_SLOT = "no_free_slot"
ENGINE_FAILURE = "engine_failure"


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


class Status(Message):
    type: Literal["status"] = "status"
    state: AgentState
    slots_busy: int = Field(ge=0)
    slots_total: int = Field(ge=0)
    model: str
    download_progress: float | None = None
    issues: tuple[str, ...] = ()


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
    request: GenerationRequest
    deadline: float | None = None


class Cancel(Message):
    type: Literal["cancel"] = "cancel"
    job_id: str


class Drain(Message):
    type: Literal["drain"] = "drain"


AgentMessage = Annotated[
    Hello | Status | Token | Done | JobError | Goodbye, Field(discriminator="type")
]
ControlPlaneMessage = Annotated[Welcome | Job | Cancel | Drain, Field(discriminator="type")]

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
