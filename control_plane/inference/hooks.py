"""Hooks around every inference API request: browser access (CORS), API keys and their rate
limit headers, and request counting.

CORS lets the dashboard's playground, served from the management address, and the configured
origins call this API from the browser (``control_plane.inference.cors``); the API key (when
required) still guards it.
"""

from __future__ import annotations

from quart import Quart, Response, request

from control_plane.inference.callers import add_rate_limit_headers, require_api_key
from control_plane.inference.cors import cors_headers
from control_plane.state import current_control_plane


def install_inference_hooks(app: Quart) -> None:
    app.before_request(_answer_preflight)
    app.before_request(require_api_key)
    app.after_request(_allow_browsers)
    app.after_request(add_rate_limit_headers)
    app.after_request(_count_request)


async def _answer_preflight() -> Response | None:
    """Browsers ask before a cross-origin POST; no API key is needed to ask."""
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return Response("", status=204, headers=_cors_headers(preflight=True))
    return None


async def _allow_browsers(response: Response) -> Response:
    response.headers.update(_cors_headers(preflight=False))
    return response


def _cors_headers(*, preflight: bool) -> dict[str, str]:
    settings = current_control_plane().settings
    origin = request.headers.get("Origin", "")
    return cors_headers(settings, origin=origin, host=request.host, preflight=preflight)


async def _count_request(response: Response) -> Response:
    if request.method != "OPTIONS":
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        current_control_plane().metrics.count_request(route, response.status_code)
    return response
