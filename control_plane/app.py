"""The two Quart applications of one control plane, sharing its state."""

from __future__ import annotations

from quart import Quart

from control_plane.agent_socket import agent_socket
from control_plane.errors import install_error_handlers
from control_plane.inference_api import inference_api
from control_plane.management_api import management_api
from control_plane.state import CONFIG_KEY, ControlPlane


def _base_app(name: str, state: ControlPlane) -> Quart:
    app = Quart(name)
    app.config[CONFIG_KEY] = state
    app.config["MAX_CONTENT_LENGTH"] = state.settings.max_request_bytes
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    install_error_handlers(app)
    return app


def create_inference_app(state: ControlPlane) -> Quart:
    """Port 8061: the OpenAI-compatible API clients use."""
    app = _base_app("paddler.inference", state)
    app.register_blueprint(inference_api)
    return app


def create_management_app(state: ControlPlane) -> Quart:
    """Port 8060: agents, operators and monitoring."""
    app = _base_app("paddler.management", state)
    app.register_blueprint(management_api)
    app.register_blueprint(agent_socket)
    return app
