"""Errors the OpenAI-compatible API answers with, and the Quart handlers that render them.

Every error response has the shape OpenAI clients expect::

    {"error": {"message": "...", "type": "...", "param": "...", "code": "..."}}

Raise an :class:`OpenAIError` anywhere inside a request handler; :func:`install_error_handlers`
turns it (and any other exception, including routing errors) into such a response.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from quart import (
    Quart,
    Response,
    current_app,
    has_request_context,
    has_websocket_context,
    request,
    websocket,
)
from werkzeug.exceptions import HTTPException

from control_plane import json_bodies

logger = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"
INVALID_VALUE = "invalid_value"
OVERLOADED = "overloaded_error"
SERVER_ERROR = "server_error"


INTERNAL_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"


class OpenAIError(Exception):
    """An error that is answered with an OpenAI-shaped JSON body and the given status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def __repr__(self) -> str:
        return (
            f"OpenAIError(status={self.status}, message={self.message!r}, type={self.type!r}, "
            f"param={self.param!r}, code={self.code!r})"
        )


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, type=INVALID_REQUEST, param=param, code=code)


def invalid_value(param: str, reason: str, code: str = INVALID_VALUE) -> OpenAIError:
    """A 400 for a field holding a wrong value; ``reason`` is one sentence, without its period."""
    return invalid_request(f"Invalid value for '{param}': {reason}.", param=param, code=code)


def field_path(location: Sequence[int | str]) -> str:
    """The field a pydantic error is about, named as OpenAI names it: ``messages[1].content``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def invalid_api_key() -> OpenAIError:
    return OpenAIError(
        401,
        "Incorrect or missing API key: send it as 'Authorization: Bearer <key>'.",
        type=INVALID_REQUEST,
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


def model_not_found(model: str) -> OpenAIError:
    return OpenAIError(
        404,
        f"The model '{model}' does not exist or is not served by any agent.",
        type=INVALID_REQUEST,
        param="model",
        code="model_not_found",
    )


def payload_too_large(limit: int | None) -> OpenAIError:
    limit_text = f" of {limit} bytes" if limit is not None else ""
    return OpenAIError(
        413,
        f"The request body is larger than the limit{limit_text}.",
        type=INVALID_REQUEST,
        code="payload_too_large",
    )


def internal_error() -> OpenAIError:
    return OpenAIError(500, INTERNAL_ERROR_MESSAGE, type=SERVER_ERROR)


def error_response(error: OpenAIError) -> Response:
    """Render ``error`` as a JSON response; useful outside of the error handlers too."""
    return json_bodies.json_response(error.body(), status=error.status, headers=error.headers)


def install_error_handlers(app: Quart) -> None:
    """Make every error ``app`` answers with an OpenAI-shaped JSON body."""
    app.register_error_handler(OpenAIError, _handle_openai_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected_exception)


async def _handle_openai_error(error: OpenAIError) -> Response:
    return error_response(error)


async def _handle_http_exception(error: HTTPException) -> Response:
    response = error_response(_openai_error_for_http_exception(error))
    allowed_methods = getattr(error, "valid_methods", None)
    if error.code == 405 and allowed_methods:
        response.headers["Allow"] = ", ".join(allowed_methods)
    return response


async def _handle_unexpected_exception(error: Exception) -> Response:
    method, path = _current_route()
    logger.error(
        "Unhandled exception while serving %s %s",
        method,
        path,
        exc_info=(type(error), error, error.__traceback__),
    )
    return error_response(internal_error())


def _openai_error_for_http_exception(error: HTTPException) -> OpenAIError:
    status = error.code or 500
    method, path = _current_route()
    if status == 404:
        return OpenAIError(404, f"Invalid URL ({method} {path})", code="unknown_url")
    if status == 405:
        return OpenAIError(
            405,
            f"Invalid method for URL ({method} {path})",
            code="method_not_allowed",
        )
    if status == 413:
        return payload_too_large(current_app.config.get("MAX_CONTENT_LENGTH"))
    if status >= 500:
        return OpenAIError(status, INTERNAL_ERROR_MESSAGE, type=SERVER_ERROR)
    return OpenAIError(status, error.description or error.name, type=INVALID_REQUEST)


def _current_route() -> tuple[str, str]:
    if has_request_context():
        return request.method, request.path
    if has_websocket_context():
        return "WEBSOCKET", websocket.path
    return "-", "-"
