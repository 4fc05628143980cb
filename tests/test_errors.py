from __future__ import annotations

import logging
from typing import Any

import pytest
from quart import Quart, request
from werkzeug.exceptions import BadRequest

from control_plane.errors import (
    OpenAIError,
    install_error_handlers,
    invalid_request,
    model_not_found,
    payload_too_large,
)
from control_plane.serving_errors import agent_error, agent_lost, buffer_full, buffer_timeout

SECRET = "password=hunter2"


def make_app() -> Quart:
    app = Quart(__name__)
    install_error_handlers(app)

    @app.post("/v1/echo")
    async def echo() -> dict[str, int]:
        return {"size": len(await request.get_data())}

    @app.get("/v1/overloaded")
    async def overloaded() -> dict[str, str]:
        raise buffer_full(2.5)

    @app.get("/v1/invalid")
    async def invalid() -> dict[str, str]:
        raise invalid_request("'n' must be 1.", param="n", code="unsupported_value")

    @app.get("/v1/bad-request")
    async def bad_request() -> dict[str, str]:
        raise BadRequest()

    @app.get("/v1/crash")
    async def crash() -> dict[str, str]:
        raise RuntimeError(f"could not connect with {SECRET}")

    return app


def assert_openai_error(body: Any) -> dict[str, Any]:
    assert isinstance(body, dict)
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)
    return error


# -- OpenAIError and its constructors --------------------------------------------------------


def test_body_has_the_openai_error_shape() -> None:
    error = OpenAIError(
        400, "Bad temperature.", type="invalid_request_error", param="temperature", code="x"
    )

    assert error.body() == {
        "error": {
            "message": "Bad temperature.",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "x",
        }
    }
    assert error.headers == {}
    assert str(error) == "Bad temperature."


@pytest.mark.parametrize(
    ("error", "status", "type", "code", "param"),
    [
        (invalid_request("Nope.", param="n"), 400, "invalid_request_error", None, "n"),
        (model_not_found("llama"), 404, "invalid_request_error", "model_not_found", "model"),
        (buffer_full(1), 503, "overloaded_error", "buffer_full", None),
        (buffer_timeout(30), 504, "overloaded_error", "buffer_timeout", None),
        (buffer_timeout(), 504, "overloaded_error", "buffer_timeout", None),
        (agent_lost(), 502, "server_error", "agent_lost", None),
        (agent_lost("agent a1 disconnected"), 502, "server_error", "agent_lost", None),
        (
            agent_error("engine_failure", "out of memory"),
            502,
            "server_error",
            "engine_failure",
            None,
        ),
        (
            agent_error(
                "context_length_exceeded", "The prompt has 9000 tokens; the limit is 4096."
            ),
            400,
            "invalid_request_error",
            "context_length_exceeded",
            None,
        ),
        (payload_too_large(1024), 413, "invalid_request_error", "payload_too_large", None),
    ],
)
def test_constructors(
    error: OpenAIError, status: int, type: str, code: str | None, param: str | None
) -> None:
    assert (error.status, error.type, error.code, error.param) == (status, type, code, param)
    assert error.message


def test_model_not_found_names_the_model() -> None:
    assert "'llama'" in model_not_found("llama").message


def test_payload_too_large_names_the_limit() -> None:
    assert "1024 bytes" in payload_too_large(1024).message


def test_agent_error_carries_the_agent_message() -> None:
    assert "out of memory" in agent_error("engine_failure", "out of memory").message


@pytest.mark.parametrize(("seconds", "header"), [(0, "1"), (0.2, "1"), (2.5, "3"), (10, "10")])
def test_buffer_full_tells_when_to_retry_in_whole_seconds(seconds: float, header: str) -> None:
    assert buffer_full(seconds).headers == {"Retry-After": header}


# -- error handlers --------------------------------------------------------------------------


async def test_raised_openai_error_answers_with_its_status_body_and_headers() -> None:
    response = await make_app().test_client().get("/v1/overloaded")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "3"
    assert response.mimetype == "application/json"
    error = assert_openai_error(await response.get_json())
    assert error == buffer_full(2.5).body()["error"]


async def test_raised_invalid_request_names_the_param() -> None:
    response = await make_app().test_client().get("/v1/invalid")

    assert response.status_code == 400
    error = assert_openai_error(await response.get_json())
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "n",
        "unsupported_value",
    )


async def test_unknown_route_answers_404() -> None:
    response = await make_app().test_client().post("/v1/nowhere")

    assert response.status_code == 404
    assert response.mimetype == "application/json"
    error = assert_openai_error(await response.get_json())
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "unknown_url"
    assert error["param"] is None
    assert error["message"] == "Invalid URL (POST /v1/nowhere)"


async def test_wrong_method_answers_405_with_allowed_methods() -> None:
    response = await make_app().test_client().get("/v1/echo")

    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    error = assert_openai_error(await response.get_json())
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "method_not_allowed"
    assert error["message"] == "Invalid method for URL (GET /v1/echo)"


async def test_body_larger_than_the_limit_answers_413() -> None:
    app = make_app()
    app.config["MAX_CONTENT_LENGTH"] = 16

    client = app.test_client()
    small = await client.post("/v1/echo", data=b"x" * 16)
    large = await client.post("/v1/echo", data=b"x" * 17)

    assert small.status_code == 200
    assert large.status_code == 413
    error = assert_openai_error(await large.get_json())
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "payload_too_large"
    assert "16 bytes" in error["message"]


async def test_werkzeug_bad_request_answers_400() -> None:
    response = await make_app().test_client().get("/v1/bad-request")

    assert response.status_code == 400
    error = assert_openai_error(await response.get_json())
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None


async def test_unexpected_exception_answers_500_without_leaking_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="control_plane.errors"):
        response = await make_app().test_client().get("/v1/crash")

    assert response.status_code == 500
    body_text = await response.get_data(as_text=True)
    assert SECRET not in body_text
    assert "Traceback" not in body_text
    assert "RuntimeError" not in body_text
    error = assert_openai_error(await response.get_json())
    assert error["type"] == "server_error"
    assert error["param"] is None
    logged = [record for record in caplog.records if record.name == "control_plane.errors"]
    assert len(logged) == 1
    assert "GET /v1/crash" in logged[0].getMessage()
    assert logged[0].exc_info is not None
    assert isinstance(logged[0].exc_info[1], RuntimeError)
    assert SECRET in caplog.text


async def test_unexpected_exception_answers_500_in_testing_mode_too() -> None:
    app = make_app()
    app.testing = True

    response = await app.test_client().get("/v1/crash")

    assert response.status_code == 500
    assert assert_openai_error(await response.get_json())["type"] == "server_error"
