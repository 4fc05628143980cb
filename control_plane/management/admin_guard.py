"""The gate in front of every management route but ``/health``, the login page and agents.

API routes (``/api/...``, ``/metrics``, ``/openapi.json``) answer a JSON 401 without the admin
token; dashboard pages send the browser to the login page. A form or other unsafe request
that relies on the session cookie must carry the session's CSRF token.
"""

from __future__ import annotations

from quart import Quart, current_app, g, redirect, request, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from control_plane import errors
from control_plane.management.admin_access import (
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    AdminAccess,
    Session,
    csrf_matches,
)

ADMIN_ACCESS_KEY = "PADDLER_ADMIN_ACCESS"
OPEN_PATHS = frozenset({"/health", "/login"})
API_PATHS = frozenset({"/metrics", "/openapi.json"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def install_admin_guard(app: Quart, access: AdminAccess) -> None:
    app.config[ADMIN_ACCESS_KEY] = access
    app.before_request(_require_admin)


def current_admin_access() -> AdminAccess:
    access: AdminAccess = current_app.config[ADMIN_ACCESS_KEY]
    return access


def current_session() -> Session | None:
    """The dashboard session of this request (None when it came with the Bearer token)."""
    session: Session | None = g.get("admin_session")
    return session


def is_api_path(path: str) -> bool:
    return path.startswith("/api/") or path in API_PATHS


def admin_token_required() -> errors.OpenAIError:
    return errors.OpenAIError(
        401,
        "This route needs the admin token: send 'Authorization: Bearer <admin token>' "
        "(printed by 'paddler up', kept in the state directory's admin-token file).",
        code="admin_token_required",
        headers={"WWW-Authenticate": "Bearer"},
    )


def csrf_token_invalid() -> errors.OpenAIError:
    return errors.OpenAIError(
        403,
        f"Missing or wrong CSRF token: send the form's {CSRF_FIELD!r} field "
        f"or the {CSRF_HEADER} header.",
        param=CSRF_FIELD,
        code="csrf_token_invalid",
    )


async def _require_admin() -> WerkzeugResponse | None:
    g.admin_session = None
    if request.path in OPEN_PATHS or request.method == "OPTIONS":
        return None
    access = current_admin_access()
    if access.accepts_authorization(request.headers.get("Authorization", "")):
        return None
    session = access.session(request.cookies.get(SESSION_COOKIE, ""))
    if session is None:
        if is_api_path(request.path) or request.method not in SAFE_METHODS:
            raise admin_token_required()
        return redirect(url_for("login.login_page", next=request.full_path.rstrip("?")))
    if request.method not in SAFE_METHODS:
        form = await request.form
        presented = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if not csrf_matches(presented, session.csrf_token):
            raise csrf_token_invalid()
    g.admin_session = session
    return None
