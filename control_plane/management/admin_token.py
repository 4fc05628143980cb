"""Secrets kept in the state directory: the admin token operators log in with, and the agent
token ``paddler up`` gives its local agents. Each comes from the settings, else is made once
and kept on disk (mode 0600), so a restarted control plane, even after SIGKILL, keeps it."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from control_plane.settings import ControlPlaneSettings

TOKEN_FILE_NAME = "admin-token"
AGENT_TOKEN_FILE_NAME = "agent-token"


def admin_token_path(settings: ControlPlaneSettings) -> Path:
    return settings.state_dir / TOKEN_FILE_NAME


def agent_token_path(settings: ControlPlaneSettings) -> Path:
    return settings.state_dir / AGENT_TOKEN_FILE_NAME


def ensure_admin_token(settings: ControlPlaneSettings) -> str:
    """The configured admin token; else the one kept in the state directory, made if missing."""
    return settings.admin_token or kept_secret(admin_token_path(settings))


def ensure_agent_token(settings: ControlPlaneSettings) -> str:
    """The configured agent token; else the one kept in the state directory, made if missing:
    agents started before a restart still present it."""
    return settings.agent_token or kept_secret(agent_token_path(settings))


def kept_secret(path: Path) -> str:
    """The secret in ``path``; a new one written there first if it is missing or empty.

    The file is written with mode 0600 so only its owner reads it.
    """
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        kept = ""
    if kept:
        return kept
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that already existed
    return token


def token_matches(presented: str, expected: str) -> bool:
    """Constant-time comparison, whatever the lengths."""
    return hmac.compare_digest(_bytes(presented), _bytes(expected))


def _bytes(secret: str) -> bytes:
    return secret.encode("utf-8", "surrogatepass")  # any str, even a lone surrogate
