"""quart-schema on the management address: validation errors as JSON and ``/openapi.json``."""

from __future__ import annotations

import pydantic
from quart import Quart, Response
from quart_schema import HttpSecurityScheme, Info, QuartSchema, RequestSchemaValidationError

from control_plane import errors
from paddler import __version__


def install_api_schema(app: Quart) -> None:
    """Serve the OpenAPI document (no UI pages: they would load scripts from a CDN)."""
    QuartSchema(
        app,
        openapi_path="/openapi.json",
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,
        info=Info(title="Paddler management API", version=__version__),
        security_schemes={"adminToken": HttpSecurityScheme(type="http", scheme="bearer")},
        security=[{"adminToken": []}],
    )
    app.register_error_handler(RequestSchemaValidationError, _validation_failed)


async def _validation_failed(error: RequestSchemaValidationError) -> Response:
    return errors.error_response(invalid_field(error.validation_error))


def invalid_field(cause: Exception) -> errors.OpenAIError:
    """A 400 naming the first field that failed validation, and why."""
    if isinstance(cause, pydantic.ValidationError) and cause.errors():
        first = cause.errors()[0]
        field = errors.field_path(first["loc"])
        if field:
            return errors.invalid_value(field, first["msg"], code="invalid_field")
        return errors.invalid_request(first["msg"], code="invalid_field")
    return errors.invalid_request(f"Invalid request: {cause}", code="invalid_field")
