"""The admin token operators log in with: from the settings, or made once and kept on disk."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from control_plane.settings import ControlPlaneSettings

TOKEN_FILE_NAME = "admin-token"


def admin_token_path(settings: ControlPlaneSettings) -> Path:
    return settings.state_dir / TOKEN_FILE_NAME


def ensure_admin_token(settings: ControlPlaneSettings) -> str:
    """The configured admin token; else the one kept in the state directory, made if missing.

    A made token is written with mode 0600 so it survives restarts and only its owner reads it.
    """
    if settings.admin_token:
        return settings.admin_token
    path = admin_token_path(settings)
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
    return hmac.compare_digest(presented.encode(), expected.encode())
