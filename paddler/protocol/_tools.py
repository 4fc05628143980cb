"""Tool calling and per-token log probabilities, as jobs ask for them and agents report them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_TOP_LOGPROBS = 20


def _any_object() -> dict[str, object]:
    return {"type": "object"}


class FunctionTool(BaseModel):
    """A function the model may call; ``parameters`` is the JSON schema of its arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    description: str = ""
    parameters: dict[str, object] = Field(default_factory=_any_object)
    strict: bool = False


class FunctionChoice(BaseModel):
    """``tool_choice`` naming one function: the model must call it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)


ToolChoice = Literal["auto", "none", "required"] | FunctionChoice

# "auto": thoughts (<think>...</think> and the like) go apart from the answer, when the model
# thinks; "none": they stay inline in the answer's text.
ReasoningFormat = Literal["auto", "none"]


class ToolCall(BaseModel):
    """A call the model made (in an assistant message of a conversation, or in a ``Done``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    arguments: str  # JSON text, as OpenAI carries it


class ToolCallDelta(BaseModel):
    """A piece of the ``index``-th tool call of an answer: its first piece has ``id`` and
    ``name``; ``arguments`` pieces concatenate into the arguments' JSON text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int = Field(ge=0)
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class TopLogprob(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str
    logprob: float
    bytes: tuple[int, ...] = ()


class TokenLogprob(BaseModel):
    """One generated token's log probability (from the logits its sampler saw, before any
    constraint), and the most likely alternatives when they were asked for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str
    logprob: float
    bytes: tuple[int, ...] = ()
    top_logprobs: tuple[TopLogprob, ...] = ()
