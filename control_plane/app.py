"""The two Quart applications of one control plane, sharing its state."""

from __future__ import annotations

from quart import Quart

from control_plane.dashboard.keys_pages import keys_pages
from control_plane.dashboard.live_views import live_views
from control_plane.dashboard.pages import dashboard, install_template_filters, templates_directory
from control_plane.dashboard.pool_page import pool_page
from control_plane.errors import install_error_handlers
from control_plane.inference.direct_routes import DirectRoutes
from control_plane.inference.hooks import install_inference_hooks
from control_plane.inference.request_ids import install_request_ids
from control_plane.inference.responses_api import responses_api
from control_plane.inference.routes import inference_api
from control_plane.management.admin_access import AdminAccess
from control_plane.management.admin_guard import install_admin_guard
from control_plane.management.admin_token import ensure_admin_token
from control_plane.management.agent_socket import AgentSocketRoute
from control_plane.management.agents_api import management_api
from control_plane.management.api_schema import install_api_schema
from control_plane.management.buffer_api import fleet_api
from control_plane.management.forwarded_proto import ForwardedProto
from control_plane.management.keys_api import keys_api
from control_plane.management.login import login
from control_plane.management.metrics_endpoint import metrics_endpoint
from control_plane.management.pools_api import pools_api
from control_plane.management.scaling_api import scaling_api
from control_plane.management.usage_api import usage_api
from control_plane.state import CONFIG_KEY, ControlPlane


def _base_app(name: str, state: ControlPlane) -> Quart:
    app = Quart(name, template_folder=str(templates_directory()))
    app.config[CONFIG_KEY] = state
    app.config["MAX_CONTENT_LENGTH"] = state.settings.max_request_bytes
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    install_error_handlers(app)
    install_request_ids(app)
    return app


def create_inference_app(state: ControlPlane) -> Quart:
    """Port 8061: the OpenAI-compatible API clients use."""
    app = _base_app("paddler.inference", state)
    install_inference_hooks(app)
    app.register_blueprint(inference_api)
    app.register_blueprint(responses_api)
    app.asgi_app = DirectRoutes(app.asgi_app, state)  # type: ignore[method-assign,assignment]
    return app


def create_management_app(state: ControlPlane, admin_token: str | None = None) -> Quart:
    """Port 8060: agents, operators (API, dashboard) and monitoring.

    ``admin_token`` defaults to the configured one, else the one kept in the state directory.
    """
    app = _base_app("paddler.management", state)
    install_api_schema(app)
    install_admin_guard(app, AdminAccess(admin_token or ensure_admin_token(state.settings)))
    install_template_filters(app)
    for blueprint in (
        management_api,
        fleet_api,
        pools_api,
        scaling_api,
        keys_api,
        usage_api,
        live_views,
        metrics_endpoint,
        login,
        dashboard,
        pool_page,
        keys_pages,
    ):
        app.register_blueprint(blueprint)
    trusted = state.settings.trusted_proxy_networks
    agents = AgentSocketRoute(app.asgi_app, state)
    app.asgi_app = ForwardedProto(agents, trusted)  # type: ignore[method-assign,assignment]
    return app
