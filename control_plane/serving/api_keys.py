"""Client authentication on the inference API: keys are kept only as SHA-256 digests."""

from __future__ import annotations

import hashlib
import hmac


class ApiKeys:
    def __init__(self, keys: str) -> None:
        """``keys``: comma-separated; empty means the API is open."""
        self._digests = [_digest(key.strip()) for key in keys.split(",") if key.strip()]

    @property
    def required(self) -> bool:
        return bool(self._digests)

    def accepts(self, authorization: str) -> bool:
        """Whether an ``Authorization`` header carries one of the keys."""
        if not self.required:
            return True
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        digest = _digest(presented.strip())
        return any(hmac.compare_digest(digest, known) for known in self._digests)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
