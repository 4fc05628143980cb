"""Required fields of one JSON object of a request (an input item, a tool), with errors that
name the field as ``input[2].call_id``."""

from __future__ import annotations

from collections.abc import Mapping

from control_plane.errors import invalid_value
from control_plane.inference.validation import (
    invalid_type,
    required_field,
)


def required_string(
    item: Mapping[str, object], key: str, param: str, *, empty: bool = False
) -> str:
    value = required_field(item, key, param)
    if not isinstance(value, str):
        raise invalid_type(f"{param}.{key}", "a string", value)
    if not value and not empty:
        raise invalid_value(f"{param}.{key}", "expected a non-empty string")
    return value
