"""The sampling a request asks for, as ``protocol.SamplingParams``.

Only the values the client gave are set, so that a pool's inference defaults can fill the rest
(see ``control_plane.serving.desired_state.apply_defaults``).
"""

from __future__ import annotations

from control_plane.errors import INVALID_VALUE, invalid_request, invalid_value
from control_plane.inference.bodies import non_empty_string
from control_plane.inference.generation_bodies import GenerationBody, ResponseFormatBody
from control_plane.inference.input_bounds import check_grammar, check_json_schema
from control_plane.inference.validation import (
    invalid_type,
    missing_parameter,
    short_json,
    too_many,
)
from paddler.protocol import ResponseFormat, SamplingParams

MAX_STOP_SEQUENCES = 4
MAX_LOGIT_BIAS_ENTRIES = 1024
MAX_TOKEN_ID = 2**31 - 1  # llama.cpp's token ids are int32


def requested_sampling(
    fields: GenerationBody,
    max_tokens: int | None,
    response_format: ResponseFormatBody | None = None,
) -> SamplingParams:
    given = {
        "max_tokens": max_tokens,
        "temperature": fields.temperature,
        "top_p": fields.top_p,
        "top_k": fields.top_k,
        "min_p": fields.min_p,
        "presence_penalty": fields.presence_penalty,
        "frequency_penalty": fields.frequency_penalty,
        "repeat_penalty": fields.repeat_penalty,
    }
    return SamplingParams(
        **{name: value for name, value in given.items() if value is not None},
        seed=fields.seed,
        stop=_stop_sequences(fields.stop),
        logit_bias=_logit_bias(fields.logit_bias),
        grammar=_grammar(fields.grammar),
        response_format=_response_format(response_format),
    )


def _stop_sequences(stop: object) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (non_empty_string(stop, "stop"),)
    if not isinstance(stop, list):
        raise invalid_type("stop", "a string or an array of strings", stop)
    if len(stop) > MAX_STOP_SEQUENCES:
        raise too_many("stop", MAX_STOP_SEQUENCES, len(stop), "stop sequences")
    return tuple(non_empty_string(item, f"stop[{index}]") for index, item in enumerate(stop))


def _logit_bias(bias: dict[str, float] | None) -> dict[int, float]:
    """OpenAI's ``logit_bias``: token ids (as JSON object keys) to a bias in [-100, 100]."""
    if not bias:
        return {}
    if len(bias) > MAX_LOGIT_BIAS_ENTRIES:
        raise too_many("logit_bias", MAX_LOGIT_BIAS_ENTRIES, len(bias), "entries")
    parsed: dict[int, float] = {}
    for key, value in bias.items():
        if not key.isascii() or not key.isdigit() or len(key) > len(str(MAX_TOKEN_ID)):
            raise invalid_request(
                f"Invalid key in 'logit_bias': {short_json(key)} is not a token id; "
                "keys must be non-negative integers written as strings.",
                param="logit_bias",
                code=INVALID_VALUE,
            )
        if not -100 <= value <= 100:
            raise invalid_value(
                f"logit_bias[{key}]",
                f"expected a number between -100 and 100, but got {short_json(value)} instead",
            )
        token_id = int(key)
        if token_id > MAX_TOKEN_ID:
            raise invalid_value(f"logit_bias[{key}]", f"no token id is above {MAX_TOKEN_ID}")
        parsed[token_id] = value
    return parsed


def _grammar(grammar: str | None) -> str | None:
    if grammar is not None:
        check_grammar(grammar)
    return grammar


def _response_format(response_format: ResponseFormatBody | None) -> ResponseFormat | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return ResponseFormat(type="json_object")
    if response_format.type == "json_schema":
        if response_format.json_schema is None:
            raise missing_parameter("response_format.json_schema")
        schema = response_format.json_schema.schema_
        if schema is not None:
            check_json_schema(schema, "response_format.json_schema.schema")
        return ResponseFormat(type="json_schema", json_schema=schema)
    raise invalid_value(
        "response_format.type",
        "expected one of 'text', 'json_object', 'json_schema', "
        f"but got {short_json(response_format.type)} instead",
    )
