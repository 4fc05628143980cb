"""OpenAI's Responses API (``/v1/responses``) over the same jobs as chat completions."""

from control_plane.inference.responses_api.routes import responses_api

__all__ = ["responses_api"]
