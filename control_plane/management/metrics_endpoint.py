"""``/metrics``: the control plane's Prometheus metrics, behind the admin token."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from quart import Blueprint, Response

from control_plane.state import current_control_plane

metrics_endpoint = Blueprint("metrics_endpoint", __name__)


@metrics_endpoint.get("/metrics")
async def metrics() -> Response:
    """Prometheus text format; scrape with ``authorization: {credentials: <admin token>}``."""
    body = current_control_plane().metrics.exposition()
    return Response(body, content_type=CONTENT_TYPE_LATEST)
