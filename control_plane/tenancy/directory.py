"""Every API key this replica knows, found by the digest of the secret a client presents.

Keys live in SQL (``KeyStore``); each replica keeps all of them in a dict by digest, so a
request is authenticated with one SHA-256 and one lookup however many keys there are, and
polls SQL for the keys changed since its last look (``refresh``, every 0.5 s), so a revoke
reaches every replica within a second. The ``api_keys`` setting's keys (bootstrap keys) are
accepted too, without limits.

The API is open (any request is let in, as the open API) only while there are no bootstrap
keys and no key row at all. Once a key has been created, keys are required, even after every
key is revoked: revoking the last key must not open the API to everyone. Until its first
refresh has read SQL, a directory with a store accepts only the bootstrap keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from control_plane.credentials import bearer_token, sha256_digest
from control_plane.db.key_store import KeyRecord, KeyStore
from control_plane.db.models import utc_now
from control_plane.tenancy.callers import ANONYMOUS, Caller

# A change's updated_at is taken before its transaction commits, so changes can become visible
# out of order: each refresh also asks again for the changes of the few seconds before the
# previous refresh (whole rows, so reading one twice is harmless).
REFRESH_OVERLAP = timedelta(seconds=5)


class KeyDirectory:
    def __init__(
        self,
        bootstrap_keys: str,
        store: KeyStore | None,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """``bootstrap_keys``: the ``api_keys`` setting, comma-separated secrets."""
        self._bootstrap = frozenset(
            sha256_digest(key.strip()).hex() for key in bootstrap_keys.split(",") if key.strip()
        )
        self._store = store
        self._clock = clock
        self._by_digest: dict[str, KeyRecord] = {}
        self._digest_of: dict[int, str] = {}  # key id -> its digest, to follow a changed one
        self._newest_change: datetime | None = None
        self._refreshed_at: datetime | None = None
        self._loaded = store is None
        self.has_budgets = False  # whether any key has a daily or monthly token budget

    @property
    def open(self) -> bool:
        """Whether requests need no key at all."""
        return not self._bootstrap and self._loaded and not self._by_digest

    @property
    def key_count(self) -> int:
        """The number of key rows known, revoked ones included."""
        return len(self._by_digest)

    def authenticate(self, authorization: str) -> Caller | None:
        """Who sent a request with this ``Authorization`` header; None: refuse it (401)."""
        if self.open:
            return ANONYMOUS
        token = bearer_token(authorization)
        if token is None:
            return None
        digest = sha256_digest(token).hex()
        if digest in self._bootstrap:
            return Caller(key=None, owner=digest)
        record = self._by_digest.get(digest)
        if record is None or not record.usable(self._clock()):
            return None
        return Caller(key=record, owner=digest)

    async def refresh(self) -> None:
        """Read the keys changed in SQL since the last refresh."""
        if self._store is None:
            return
        started_at = self._clock()
        after = self._newest_change
        if after is not None and self._refreshed_at is not None:
            after = min(after, self._refreshed_at - REFRESH_OVERLAP)
        self._apply(await self._store.changed_since(after))
        self._refreshed_at = started_at
        self._loaded = True

    def _apply(self, records: Iterable[KeyRecord]) -> None:
        changed = False
        for record in records:
            if self._newest_change is None or record.updated_at > self._newest_change:
                self._newest_change = record.updated_at
            old_digest = self._digest_of.get(record.id)
            if old_digest is not None and self._by_digest[old_digest] == record:
                continue
            if old_digest is not None and old_digest != record.digest:
                del self._by_digest[old_digest]
            self._by_digest[record.digest] = record
            self._digest_of[record.id] = record.digest
            changed = True
        if changed:
            self.has_budgets = any(
                key.daily_token_budget is not None or key.monthly_token_budget is not None
                for key in self._by_digest.values()
            )
