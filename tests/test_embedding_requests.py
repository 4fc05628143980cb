"""Validation of ``POST /v1/embeddings`` bodies: what is accepted, and the 400 for the rest."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest
from openai.types import CreateEmbeddingResponse

from control_plane.errors import OpenAIError
from control_plane.inference.embedding_requests import MAX_INPUTS, parse_embeddings
from control_plane.inference.openai_objects import base64_float32, embedding_list


def body(**fields: Any) -> bytes:
    return json.dumps({"model": "m", "input": "hello", **fields}).encode()


def rejection(raw: bytes) -> OpenAIError:
    with pytest.raises(OpenAIError) as raised:
        parse_embeddings(raw)
    error = raised.value
    assert error.status == 400 and error.type == "invalid_request_error"
    assert set(error.body()["error"]) == {"message", "type", "param", "code"}
    return error


def test_a_string_input_is_one_input_in_float_format() -> None:
    call = parse_embeddings(body())
    assert call.model == "m"
    assert call.encoding_format == "float"
    assert call.request.kind == "embedding"
    assert call.request.inputs == ("hello",)


def test_a_list_input_keeps_its_order_and_user_and_format_are_accepted() -> None:
    call = parse_embeddings(body(input=["b", "a", "b"], encoding_format="base64", user="u-1"))
    assert call.request.inputs == ("b", "a", "b")
    assert call.encoding_format == "base64"


def test_explicit_float_format_and_null_optionals_are_accepted() -> None:
    call = parse_embeddings(body(encoding_format="float", user=None, dimensions=None))
    assert call.encoding_format == "float"


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"input": ""}, "input", "invalid_value"),
        ({"input": []}, "input", "invalid_value"),
        ({"input": ["ok", ""]}, "input[1]", "invalid_value"),
        ({"input": ["ok", 3.5]}, "input[1]", "invalid_type"),
        ({"input": ["ok", None]}, "input[1]", "invalid_type"),
        ({"input": [True]}, "input[0]", "invalid_type"),
        ({"input": 7}, "input", "invalid_type"),
        ({"input": None}, "input", "invalid_type"),
        ({"input": {"text": "hi"}}, "input", "invalid_type"),
        ({"input": [1, 2, 3]}, "input", "unsupported_value"),
        ({"input": [[1, 2], [3]]}, "input", "unsupported_value"),
        ({"input": ["x"] * (MAX_INPUTS + 1)}, "input", "invalid_value"),
        ({"model": ""}, "model", "invalid_value"),
        ({"model": 5}, "model", "invalid_type"),
        ({"encoding_format": "int8"}, "encoding_format", "invalid_value"),
        ({"encoding_format": 1}, "encoding_format", "invalid_value"),
        ({"dimensions": 64}, "dimensions", "unsupported_parameter"),
        ({"dimensions": 0}, "dimensions", "invalid_value"),
        ({"dimensions": "64"}, "dimensions", "invalid_type"),
        ({"user": 1}, "user", "invalid_type"),
        ({"stream": True}, "stream", "unknown_parameter"),
    ],
)
def test_bad_fields_are_named(fields: dict[str, Any], param: str, code: str) -> None:
    error = rejection(body(**fields))
    assert (error.param, error.code) == (param, code), error.message
    assert param.split("[")[0] in error.message


def test_missing_fields_are_named() -> None:
    assert rejection(b'{"model": "m"}').param == "input"
    assert rejection(b'{"input": "x"}').param == "model"


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1]", b'"text"', b'{"input": NaN}'])
def test_bodies_that_are_not_a_json_object_are_rejected(raw: bytes) -> None:
    error = rejection(raw)
    assert error.code in ("invalid_json", "invalid_type")


def test_response_in_float_format_parses_as_the_sdk_type() -> None:
    response = CreateEmbeddingResponse.model_validate(
        embedding_list("m", [[0.6, 0.8], [1.0, 0.0]], 5)
    )
    assert response.object == "list" and response.model == "m"
    assert [item.index for item in response.data] == [0, 1]
    assert response.data[0].embedding == [0.6, 0.8]
    assert response.usage.prompt_tokens == response.usage.total_tokens == 5


def test_base64_format_is_little_endian_float32() -> None:
    vector = [0.25, -1.5, 3.0]
    body = embedding_list("m", [vector], 2, encoding_format="base64")
    encoded = body["data"][0]["embedding"]
    assert encoded == base64_float32(vector)
    assert list(struct.unpack("<3f", base64.b64decode(encoded))) == vector
