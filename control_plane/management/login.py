"""Dashboard login and logout: the admin token in, a session cookie out."""

from __future__ import annotations

import secrets
from urllib.parse import quote, urlsplit

from quart import Blueprint, Response, make_response, redirect, render_template, request
from quart_schema import hide
from werkzeug.wrappers import Response as WerkzeugResponse

from control_plane.management.admin_access import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    csrf_matches,
)
from control_plane.management.admin_guard import current_admin_access, current_session

login = Blueprint("login", __name__)

AnyResponse = Response | WerkzeugResponse

PRINTABLE_ASCII = "".join(chr(code) for code in range(0x21, 0x7F))
UNSAFE_IN_NEXT = frozenset("\\" + "".join(chr(code) for code in range(0x20)) + "\x7f")


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this host, else ``/``.

    Browsers drop tabs and line breaks inside URLs and read ``\\`` as ``/``, so a target
    holding any of them, or any other control character or white space, could turn into
    ``//elsewhere`` in the browser: it is refused rather than cleaned. Other characters
    outside printable ASCII are percent-encoded, so the Location header is plain ASCII.
    """
    if not target or not target.startswith("/"):
        return "/"
    if any(character in UNSAFE_IN_NEXT or character.isspace() for character in target):
        return "/"
    try:
        path = quote(target, safe=PRINTABLE_ASCII)
    except UnicodeEncodeError:  # a lone surrogate
        return "/"
    parts = urlsplit(path)
    if path.startswith("//") or parts.scheme or parts.netloc:
        return "/"
    return path


def _secure() -> bool:
    """Whether this request reached us over TLS (``forwarded_proto`` believes trusted proxies)."""
    return request.scheme == "https"


async def _login_form(error: str = "", status: int = 200) -> AnyResponse:
    csrf_token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    page = await render_template(
        "login.html",
        session=None,
        csrf_token=csrf_token,
        next_page=safe_next(request.args.get("next") or (await request.form).get("next")),
        error=error,
    )
    response = await make_response(page, status)
    response.set_cookie(
        LOGIN_CSRF_COOKIE, csrf_token, httponly=True, samesite="Strict", secure=_secure()
    )
    return response


@login.get("/login")
@hide
async def login_page() -> AnyResponse:
    return await _login_form()


@login.post("/login")
@hide
async def login_submit() -> AnyResponse:
    form = await request.form
    if not csrf_matches(form.get(CSRF_FIELD), request.cookies.get(LOGIN_CSRF_COOKIE, "")):
        return await _login_form("The form expired; please try again.", 400)
    token = form.get("token", "").strip()
    if not token:
        return await _login_form("Enter the admin token.", 400)
    access = current_admin_access()
    if not access.accepts_token(token):
        return await _login_form("That is not the admin token.", 401)
    session = access.open_session()
    response = redirect(safe_next(form.get("next")))
    response.set_cookie(
        SESSION_COOKIE,
        session.id,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="Strict",
        secure=_secure(),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@login.post("/logout")
@hide
async def logout() -> AnyResponse:
    """Reached only through the admin guard, which checked the session's CSRF token."""
    session = current_session()
    if session is not None:
        current_admin_access().close_session(session.id)
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE)
    return response
