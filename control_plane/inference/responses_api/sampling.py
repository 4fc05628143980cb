"""The sampling a Responses request asks for, as ``protocol.SamplingParams``: only the values
the client gave are set, so that a pool's inference defaults fill the rest."""

from __future__ import annotations

from control_plane.inference.input_bounds import check_json_schema
from control_plane.inference.responses_api.bodies import ResponsesBody, TextFormat
from control_plane.inference.validation import missing_parameter
from paddler.protocol import ResponseFormat, SamplingParams


def sampling_of(body: ResponsesBody) -> SamplingParams:
    given = {
        "max_tokens": body.max_output_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
    }
    return SamplingParams(
        **{name: value for name, value in given.items() if value is not None},
        response_format=_response_format(body.text.format if body.text else None),
    )


def _response_format(text_format: TextFormat | None) -> ResponseFormat | None:
    if text_format is None or text_format.type == "text":
        return None
    if text_format.type == "json_object":
        return ResponseFormat(type="json_object")
    if text_format.name is None:
        raise missing_parameter("text.format.name")
    if text_format.schema_ is None:
        raise missing_parameter("text.format.schema")
    check_json_schema(text_format.schema_, "text.format.schema")
    return ResponseFormat(type="json_schema", json_schema=text_format.schema_)


def text_object(text_format: TextFormat | None) -> dict[str, object]:
    """``text`` as a response echoes it."""
    if text_format is None:
        return {"format": {"type": "text"}}
    return {"format": text_format.model_dump(by_alias=True, exclude_none=True)}
