"""Who may use the management address: the admin token as a Bearer, or a dashboard session.

Sessions live in memory (a restart logs browsers out; the token itself survives). Each one
has its own CSRF token, which every form posted with the session cookie must carry.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from control_plane.credentials import bearer_token, sha256_digest
from control_plane.management.admin_token import token_matches

SESSION_COOKIE = "paddler_session"
LOGIN_CSRF_COOKIE = "paddler_login_csrf"
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class Session:
    id: str
    csrf_token: str
    expires_at: float


class AdminAccess:
    def __init__(self, token: str, *, clock: Callable[[], float] = time.time) -> None:
        if not token:
            raise ValueError("the admin token must not be empty")
        self._token = token
        self._clock = clock
        self._sessions: dict[bytes, Session] = {}  # by digest of the session id

    def accepts_token(self, presented: str) -> bool:
        return token_matches(presented, self._token)

    def accepts_authorization(self, header: str) -> bool:
        """Whether an ``Authorization`` header carries the admin token as a Bearer."""
        presented = bearer_token(header)
        return presented is not None and self.accepts_token(presented)

    def open_session(self) -> Session:
        self._forget_expired()
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf_token=secrets.token_urlsafe(32),
            expires_at=self._clock() + SESSION_SECONDS,
        )
        self._sessions[sha256_digest(session.id)] = session
        return session

    def session(self, session_id: str) -> Session | None:
        """The live session with this id, if any."""
        if not session_id:
            return None
        session = self._sessions.get(sha256_digest(session_id))
        if session is None or session.expires_at <= self._clock():
            return None
        return session

    def close_session(self, session_id: str) -> None:
        self._sessions.pop(sha256_digest(session_id), None)

    def _forget_expired(self) -> None:
        now = self._clock()
        for key in [key for key, session in self._sessions.items() if session.expires_at <= now]:
            del self._sessions[key]


def csrf_matches(presented: str | None, expected: str) -> bool:
    return bool(presented) and token_matches(presented or "", expected)
