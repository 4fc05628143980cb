"""Reading request bodies: the JSON object, strict pydantic models, and shared field checks.

Every failure is an OpenAI-shaped 400 (see :mod:`control_plane.inference.validation`).
"""

from __future__ import annotations

import json
from typing import NoReturn, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from control_plane.errors import invalid_request, invalid_value
from control_plane.inference.validation import (
    INVALID_JSON,
    INVALID_TYPE,
    error_from_validation,
    invalid_type,
    json_type_name,
    unknown_parameter,
)


class StrictBody(BaseModel):
    """A body (or part of one) checked without coercion: ``"stream": 1`` is not a boolean."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


BodyT = TypeVar("BodyT", bound=BaseModel)


def json_object(body: bytes | str) -> dict[str, object]:
    try:
        data: object = json.loads(body, parse_constant=_reject_json_constant)
    except (ValueError, RecursionError):
        raise invalid_request(
            "We could not parse the JSON body of your request. The API expects a JSON object "
            "in the request body; what was sent was not valid JSON.",
            code=INVALID_JSON,
        ) from None
    if not isinstance(data, dict):
        raise invalid_request(
            f"The request body must be a JSON object, but got {json_type_name(data)} instead.",
            code=INVALID_TYPE,
        )
    return data


def _reject_json_constant(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not valid JSON")


def validate_body(model: type[BodyT], data: dict[str, object]) -> BodyT:
    """``data`` as ``model``; an unknown field is named before any other problem."""
    for name in data:
        if name not in model.model_fields:
            raise unknown_parameter(name)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise error_from_validation(error.errors(include_url=False)[0]) from None


def non_empty_string(value: object, param: str) -> str:
    if not isinstance(value, str):
        raise invalid_type(param, "a string", value)
    if not value:
        raise invalid_value(param, "expected a non-empty string")
    return value
