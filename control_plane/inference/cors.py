"""Which web pages may call the inference API from a browser (CORS).

Only the configured origins (``cors_origins``; ``*`` for any) and the dashboard's own
(its playground calls this API): this host at the management port. Any other origin gets no
CORS headers, so browsers keep its pages from reading the answers.
"""

from __future__ import annotations

from control_plane.addresses import dialable, split_address
from control_plane.settings import ControlPlaneSettings

ANY_ORIGIN = "*"
EXPOSED = {"Access-Control-Expose-Headers": "X-Request-Id"}
PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Request-Id",
    "Access-Control-Max-Age": "600",
}


def cors_headers(
    settings: ControlPlaneSettings, *, origin: str, host: str, preflight: bool
) -> dict[str, str]:
    """The CORS headers for a request from ``origin`` (its ``Origin`` header, maybe empty) sent
    to ``host`` (its ``Host``); none when that origin is not allowed."""
    allowed = settings.allowed_cors_origins
    if ANY_ORIGIN in allowed:
        granted = ANY_ORIGIN
    elif origin and (origin in allowed or origin in _dashboard_origins(settings, host)):
        granted = origin
    else:
        return {}
    headers = {"Access-Control-Allow-Origin": granted, **EXPOSED}
    if granted != ANY_ORIGIN:
        headers["Vary"] = "Origin"
    if preflight:
        headers.update(PREFLIGHT)
    return headers


def _dashboard_origins(settings: ControlPlaneSettings, host: str) -> set[str]:
    """The dashboard as a browser reaches it: the host this request was sent to, or the
    management address's, at the management port."""
    management_host, port = split_address(dialable(settings.management_addr))
    hosts = {management_host, split_address(host)[0] or host}
    return {f"{scheme}://{host}:{port}" for host in hosts for scheme in ("http", "https")}
