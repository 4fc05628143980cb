"""Who sent a request, once its key is known."""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.db.key_store import KeyRecord
from control_plane.serving.jobs import Sender

# A key's priority class, as the buffer orders them: a lower number is served first.
PRIORITIES = {"high": 0, "normal": 1, "low": 2}
NORMAL_PRIORITY = PRIORITIES["normal"]

BOOTSTRAP_KEY_ID = 0  # usage of the bootstrap keys (the api_keys setting) and the open API


@dataclass(frozen=True)
class Caller:
    """An authenticated client: a key from SQL, or ``key`` None for a bootstrap key from the
    settings or the open API. ``owner`` is the hex digest of the key presented ("" for the
    open API): whatever the caller stores (responses) belongs to it."""

    key: KeyRecord | None
    owner: str

    @property
    def name(self) -> str:
        """The key's name; "" for a bootstrap key or the open API."""
        return "" if self.key is None else self.key.name

    @property
    def key_id(self) -> int:
        return BOOTSTRAP_KEY_ID if self.key is None else self.key.id

    def sender(self) -> Sender:
        """The caller as the buffer sees its jobs."""
        if self.key is None:
            return Sender()
        return Sender(
            key=self.key.name,
            priority=PRIORITIES.get(self.key.priority, NORMAL_PRIORITY),
            weight=1.0,
            max_buffered=self.key.max_buffered,
        )


ANONYMOUS = Caller(key=None, owner="")
