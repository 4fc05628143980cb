"""Who is calling the inference API: the API key checked before every route, and the rate
limit headers of an admitted request put on its response."""

from __future__ import annotations

from quart import Response, g, request

from control_plane import errors
from control_plane.state import current_control_plane
from control_plane.tenancy import Caller, Ticket

OPEN_PATHS = frozenset({"/health"})


async def require_api_key() -> None:
    """Refuse a request without a usable key (401) unless the API is open."""
    if request.path in OPEN_PATHS:
        return
    directory = current_control_plane().tenancy.directory
    caller = directory.authenticate(request.headers.get("Authorization", ""))
    if caller is None:
        raise errors.invalid_api_key()
    g.caller = caller


def current_caller() -> Caller:
    caller: Caller = g.caller
    return caller


def admitted(ticket: Ticket) -> None:
    """``ticket``'s request was let in: its response carries the key's rate limit headers."""
    g.ticket = ticket


async def add_rate_limit_headers(response: Response) -> Response:
    ticket: Ticket | None = g.get("ticket")
    if ticket is not None:
        response.headers.update(ticket.headers)
    return response
