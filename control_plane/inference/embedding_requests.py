"""Parse and validate the body of ``POST /v1/embeddings``.

Strict like :mod:`control_plane.inference.chat_requests`: every failure is an OpenAI-shaped
400 whose ``param`` names the field, e.g. ``input[2]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from control_plane.errors import invalid_value
from control_plane.inference.bodies import StrictBody, json_object, non_empty_string, validate_body
from control_plane.inference.input_bounds import reject_lone_surrogates
from control_plane.inference.validation import (
    invalid_type,
    too_many,
    unsupported_parameter,
    unsupported_value,
)
from paddler.protocol import EmbeddingRequest

MAX_INPUTS = 2048  # OpenAI's limit on the number of inputs in one request

EncodingFormat = Literal["float", "base64"]


@dataclass(frozen=True)
class EmbeddingCall:
    """A validated embeddings request, ready to be routed to an agent."""

    model: str
    encoding_format: EncodingFormat
    request: EmbeddingRequest


class _EmbeddingBody(StrictBody):
    model: str = Field(min_length=1)
    input: object  # a string or an array of strings; checked by ``_inputs``
    encoding_format: EncodingFormat | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


def parse_embeddings(body: bytes | str) -> EmbeddingCall:
    data = json_object(body)
    reject_lone_surrogates(data)
    fields = validate_body(_EmbeddingBody, data)
    if fields.dimensions is not None:
        raise unsupported_parameter(
            "dimensions",
            "shortened embeddings are not supported; omit it to get the model's full vectors.",
        )
    return EmbeddingCall(
        model=fields.model,
        encoding_format=fields.encoding_format or "float",
        request=EmbeddingRequest(inputs=_inputs(fields.input)),
    )


def _inputs(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (non_empty_string(value, "input"),)
    if not isinstance(value, list):
        raise invalid_type("input", "a string or an array of strings", value)
    if not value:
        raise invalid_value("input", "expected a non-empty string or a non-empty array of strings")
    if len(value) > MAX_INPUTS:
        raise too_many("input", MAX_INPUTS, len(value), "inputs")
    if any(_is_token_ids(item) for item in value):
        raise unsupported_value("input", "inputs given as token ids are not supported; send text.")
    return tuple(non_empty_string(item, f"input[{index}]") for index, item in enumerate(value))


def _is_token_ids(value: object) -> bool:
    """A token id, or an array of them (OpenAI accepts both; we take text only)."""
    if isinstance(value, list):
        return bool(value) and all(_is_token_id(item) for item in value)
    return _is_token_id(value)


def _is_token_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
