"""The text of a message's ``content`` (or a function call's ``output``): a string, or text
parts joined by newlines. Images and files are refused: no pool serves a vision model yet."""

from __future__ import annotations

from control_plane.inference.prompts import joined_parts
from control_plane.inference.validation import (
    invalid_type,
    reject_unknown_keys,
    required_field,
    unsupported_value,
)

_TEXT_PARTS = {"input_text": "text", "output_text": "text", "refusal": "refusal"}
_PART_KEYS = ("type", "text", "refusal", "annotations", "logprobs")


def message_text(content: object, role: str, param: str) -> str:
    return joined_parts(content, param, _part_text, may_be_empty=role == "assistant")


def _part_text(part: object, param: str) -> str:
    if not isinstance(part, dict):
        raise invalid_type(param, "an object (a content part)", part)
    kind = required_field(part, "type", param)
    if kind not in _TEXT_PARTS:
        raise unsupported_value(
            f"{param}.type",
            f"content parts of type {kind!r} are not supported; this server's models read "
            "text only ('input_text', 'output_text' and 'refusal' parts).",
        )
    reject_unknown_keys(part, _PART_KEYS, param)
    text = required_field(part, _TEXT_PARTS[kind], param)
    if not isinstance(text, str):
        raise invalid_type(f"{param}.{_TEXT_PARTS[kind]}", "a string", text)
    return text
