"""A pool's desired state: what its agents run and how its requests are sampled by default.

It is kept, versioned, in the pool's ``settings`` JSON under ``desired``. The model source,
slots, chat template and context size go to the agents (``protocol.DesiredState``); the
inference defaults stay here and fill the sampling fields a request leaves out; the scaling
bounds are recorded for the autoscaler.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from control_plane import errors
from control_plane.serving.prefix_routing import RoutingPolicy
from paddler.chat_template import ChatTemplateError
from paddler.model_source import ModelSourceError, parse_model_source
from paddler.protocol import ChatMessage, DesiredState, GenerationRequest, ReasoningFormat
from paddler.template_probe import probe_template

logger = logging.getLogger("paddler.pools")

SETTINGS_KEY = "desired"
_REQUEST_DEFAULTS = frozenset({"reasoning_format"})  # the rest are sampling fields
POOL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
_PROBE = (ChatMessage(role="user", content="Hello"),)


# The values a sampling field may take, alike in a request and in a pool's defaults.
Temperature = Annotated[float, Field(ge=0, le=2)]
TopP = Annotated[float, Field(gt=0, le=1)]
TopK = Annotated[int, Field(ge=0)]
MinP = Annotated[float, Field(ge=0, le=1)]
RepeatPenalty = Annotated[float, Field(gt=0, le=10)]
Penalty = Annotated[float, Field(ge=-2, le=2)]
MaxTokens = Annotated[int, Field(ge=1)]


class InferenceDefaults(BaseModel):
    """Sampling values, and whether thoughts come apart from the answer, that a request of the
    pool gets when it does not set them itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: TopK | None = None
    min_p: MinP | None = None
    repeat_penalty: RepeatPenalty | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    max_tokens: MaxTokens | None = None
    reasoning_format: ReasoningFormat | None = None

    def set_values(self) -> dict[str, Any]:
        return {name: value for name, value in self.model_dump().items() if value is not None}


class ScalingBounds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_agents: int | None = Field(None, ge=0, le=1000)
    max_agents: int | None = Field(None, ge=1, le=1000)

    @model_validator(mode="after")
    def _ordered(self) -> ScalingBounds:
        low, high = self.min_agents, self.max_agents
        if low is not None and high is not None and low > high:
            raise ValueError(f"min_agents ({low}) is more than max_agents ({high})")
        return self


class RoutingSettings(BaseModel):
    """How the pool's requests pick an agent (see control_plane/serving/prefix_routing.py).

    ``mode``: ``prefix`` (the agent already holding the prompt's start) or ``least_busy``
    (load alone, as before prefix-aware routing). ``affinity_wait``: milliseconds a request
    may wait for the busy agent that holds its prompt's start while another has a free slot
    (0: never). ``imbalance_bound``: by how much (busy slots / slots) the holder may be more
    loaded than the least loaded agent before the request goes to the least busy one
    instead (1: always the holder).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["prefix", "least_busy"] = "prefix"
    affinity_wait: int = Field(0, ge=0, le=60_000)
    imbalance_bound: float = Field(0.5, ge=0, le=1)

    def policy(self) -> RoutingPolicy:
        return RoutingPolicy(
            self.affinity_wait / 1000, self.imbalance_bound, prefix_aware=self.mode == "prefix"
        )


class PoolSpec(BaseModel):
    """The body of ``PUT /api/v1/pools/<name>/desired-state``: the whole desired state.

    ``chat_template`` and ``context_size`` left out: each agent's own (its flags, or the
    model's template).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_source: str = Field(min_length=1, max_length=2000)
    slots: int = Field(ge=1, le=256)
    chat_template: str | None = Field(None, max_length=100_000)
    context_size: int | None = Field(None, ge=64, le=1_048_576)
    inference_defaults: InferenceDefaults = InferenceDefaults()
    scaling: ScalingBounds = ScalingBounds()
    routing: RoutingSettings = RoutingSettings()


class NewPool(PoolSpec):
    """The body of ``POST /api/v1/pools``: the pool's name (the model clients ask for) and its
    desired state."""

    name: str = Field(pattern=POOL_NAME_PATTERN)


class StoredDesiredState(PoolSpec):
    version: int = Field(ge=1)

    def to_agents(self) -> DesiredState:
        return DesiredState(
            version=self.version,
            model_source=self.model_source,
            slots=self.slots,
            chat_template=self.chat_template,
            context_size=self.context_size,
        )


def unprocessable(param: str, message: str) -> errors.OpenAIError:
    return errors.OpenAIError(422, message, param=param, code="invalid_desired_state")


async def check_spec(spec: PoolSpec) -> None:
    """What the schema cannot check: the source's form and that the template renders (422).

    The template is rendered in a child process, bounded in time and memory, so a costly one
    never stalls this process's streams and heartbeats.
    """
    try:
        parse_model_source(spec.model_source)
    except ModelSourceError as error:
        raise unprocessable("model_source", f"Invalid model_source: {error}") from error
    if spec.chat_template is not None:
        try:
            await probe_template(spec.chat_template, _PROBE)
        except ChatTemplateError as error:
            logger.warning("desired state refused: its chat_template does not render: %s", error)
            raise unprocessable(
                "chat_template", f"The chat_template does not render a conversation: {error}"
            ) from error


def stored(settings: dict[str, Any]) -> StoredDesiredState | None:
    """The desired state kept in a pool's ``settings`` (None: none, or unreadable)."""
    raw = settings.get(SETTINGS_KEY)
    if raw is None:
        return None
    try:
        return StoredDesiredState.model_validate(raw)
    except ValidationError:
        return None


def with_desired(
    settings: dict[str, Any], spec: PoolSpec, version: int
) -> tuple[dict[str, Any], StoredDesiredState]:
    """``settings`` holding ``spec`` as version ``version``."""
    record = StoredDesiredState(**spec.model_dump(exclude={"name"}), version=version)
    return {**settings, SETTINGS_KEY: record.model_dump(mode="json")}, record


def apply_defaults(request: GenerationRequest, defaults: InferenceDefaults) -> GenerationRequest:
    """``request`` with the pool's defaults in the fields it did not set itself."""
    sampling = request.sampling
    values = defaults.set_values()
    missing_sampling = {
        name: value
        for name, value in values.items()
        if name not in _REQUEST_DEFAULTS and name not in sampling.model_fields_set
    }
    missing = {
        name: value
        for name, value in values.items()
        if name in _REQUEST_DEFAULTS and name not in request.model_fields_set
    }
    if missing_sampling:
        missing["sampling"] = sampling.model_copy(update=missing_sampling)
    return request.model_copy(update=missing) if missing else request
