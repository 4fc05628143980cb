"""API key secrets: how a new one is made, and what is kept and shown of it."""

from __future__ import annotations

import secrets

from control_plane.credentials import sha256_digest

SECRET_PREFIX = "sk-pfp-"
VISIBLE_CHARACTERS = 12


def new_secret() -> str:
    """A new key's secret: ``sk-pfp-`` and 40 URL-safe characters (240 random bits)."""
    return SECRET_PREFIX + secrets.token_urlsafe(30)


def visible_prefix(secret: str) -> str:
    """The start of a secret, kept in clear to tell keys apart in lists and logs."""
    return secret[:VISIBLE_CHARACTERS]


def secret_digest(secret: str) -> str:
    """What is kept of a secret: its hex SHA-256 digest."""
    return sha256_digest(secret).hex()
