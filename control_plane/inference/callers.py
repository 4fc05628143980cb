"""Who is calling the inference API: the API key checked before every route, the rate limit
headers of an admitted request put on its response, and a Quart route's submission on behalf
of its caller."""

from __future__ import annotations

from collections.abc import AsyncIterator

from quart import Response, g, request

from control_plane import errors
from control_plane.inference.submission import SESSION_HEADER, submit
from control_plane.serving.jobs import InferenceJob
from control_plane.serving.relay import Update
from control_plane.state import ControlPlane, current_control_plane
from control_plane.tenancy import Caller, Ticket
from paddler.protocol import JobRequest

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


def submit_for_caller(
    state: ControlPlane, model: str, job_request: JobRequest, *, user: str | None = None
) -> tuple[InferenceJob, AsyncIterator[Update]]:
    """``submission.submit`` for the current Quart request: its caller, its ``X-Session-Id``,
    and its response gets the rate limit headers once the key lets it in."""
    return submit(
        state,
        model,
        job_request,
        caller=current_caller(),
        session_header=request.headers.get(SESSION_HEADER),
        on_admission=admitted,
        user=user,
    )
