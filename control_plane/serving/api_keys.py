"""Client authentication on the inference API: keys are kept only as SHA-256 digests."""

from __future__ import annotations

import hmac

from control_plane.credentials import bearer_token, sha256_digest


class ApiKeys:
    def __init__(self, keys: str) -> None:
        """``keys``: comma-separated; empty means the API is open."""
        self._digests = [sha256_digest(key.strip()) for key in keys.split(",") if key.strip()]

    @property
    def required(self) -> bool:
        return bool(self._digests)

    def accepts(self, authorization: str) -> bool:
        """Whether an ``Authorization`` header carries one of the keys."""
        if not self.required:
            return True
        presented = bearer_token(authorization)
        if presented is None:
            return False
        digest = sha256_digest(presented)
        return any(hmac.compare_digest(digest, known) for known in self._digests)

    def owner(self, authorization: str) -> str:
        """Who owns what an accepted ``Authorization`` header creates (stored responses): the
        hex SHA-256 digest of its key, or "" when the API is open (everything is everyone's)."""
        if not self.required:
            return ""
        presented = bearer_token(authorization)
        return "" if presented is None else sha256_digest(presented).hex()
