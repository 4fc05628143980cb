"""OpenAI-style 400 errors for request bodies, worded the way OpenAI words them.

Also turns pydantic's validation errors into such errors, with ``param`` as a path like
``messages[1].content``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic_core import ErrorDetails

from control_plane.errors import OpenAIError, field_path, invalid_request, invalid_value

UNKNOWN_PARAMETER = "unknown_parameter"
MISSING_PARAMETER = "missing_required_parameter"
INVALID_TYPE = "invalid_type"
INVALID_JSON = "invalid_json"
UNSUPPORTED_PARAMETER = "unsupported_parameter"
UNSUPPORTED_VALUE = "unsupported_value"


_EXPECTED_TYPES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}

_BOUND_COMPARISONS = {
    "greater_than_equal": ("ge", ">="),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "<="),
    "less_than": ("lt", "<"),
}


def error_from_validation(error: ErrorDetails) -> OpenAIError:
    param = field_path(error["loc"])
    kind = error["type"]
    value = error["input"]
    context = error.get("ctx") or {}
    if kind == "missing":
        return missing_parameter(param)
    if kind == "extra_forbidden":
        return unknown_parameter(param)
    if kind in _EXPECTED_TYPES:
        return invalid_type(param, _EXPECTED_TYPES[kind], value)
    if kind == "literal_error":
        reason = f"expected one of {context['expected']}, but got {short_json(value)} instead"
    elif kind == "string_too_short":
        reason = "expected a non-empty string"
    elif kind == "too_short":
        reason = "expected a non-empty array"
    elif kind in _BOUND_COMPARISONS:
        bound_name, operator = _BOUND_COMPARISONS[kind]
        reason = (
            f"expected a value {operator} {format_bound(context[bound_name])}, "
            f"but got {short_json(value)} instead"
        )
    elif kind == "finite_number":
        reason = "expected a finite number"
    else:
        reason = error["msg"]
    return invalid_value(param, reason)


def required_field(container: Mapping[str, object], key: str, param: str) -> object:
    """``container[key]``; its absence is a missing ``{param}.{key}``."""
    if key not in container:
        raise missing_parameter(f"{param}.{key}")
    return container[key]


def missing_parameter(param: str) -> OpenAIError:
    return invalid_request(
        f"Missing required parameter: '{param}'.", param=param, code=MISSING_PARAMETER
    )


def unknown_parameter(param: str) -> OpenAIError:
    return invalid_request(
        f"Unrecognized request argument supplied: {param}", param=param, code=UNKNOWN_PARAMETER
    )


def invalid_type(param: str, expected: str, value: object) -> OpenAIError:
    return invalid_request(
        f"Invalid type for '{param}': expected {expected}, "
        f"but got {json_type_name(value)} instead.",
        param=param,
        code=INVALID_TYPE,
    )


def reject_unknown_keys(
    container: Mapping[str, object], known: tuple[str, ...], param: str
) -> None:
    """An object checked by hand (not a body model) names its first unknown key."""
    for key in container:
        if key not in known:
            raise unknown_parameter(f"{param}.{key}")


def unsupported_parameter(param: str, reason: str) -> OpenAIError:
    return invalid_request(
        f"Unsupported parameter '{param}': {reason}", param=param, code=UNSUPPORTED_PARAMETER
    )


def unsupported_value(param: str, reason: str) -> OpenAIError:
    return invalid_request(
        f"Unsupported value for '{param}': {reason}", param=param, code=UNSUPPORTED_VALUE
    )


def too_many(param: str, limit: int, count: int, items: str) -> OpenAIError:
    """``param`` is an array (or object) with more than ``limit`` ``items``."""
    return invalid_value(param, f"expected at most {limit} {items}, but got {count}")


def json_type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def format_bound(bound: object) -> str:
    if isinstance(bound, float) and bound.is_integer():
        return str(int(bound))
    return str(bound)


def short_json(value: object, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
