"""Secrets as they arrive and as they are kept: Bearer tokens and their SHA-256 digests."""

from __future__ import annotations

import hashlib
import hmac


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for any other header."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def sha256_digest(secret: str) -> bytes:
    """What is kept of a secret, so that it is compared without being stored."""
    return hashlib.sha256(secret.encode()).digest()


def secrets_match(presented: str, expected: str) -> bool:
    """Whether ``presented`` is ``expected``, in time that does not depend on where they differ.

    Compared as UTF-8 bytes: ``hmac.compare_digest`` refuses ``str`` with non-ASCII characters,
    which a client controls.
    """
    return hmac.compare_digest(
        presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )
