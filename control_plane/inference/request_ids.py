"""Request ids: taken from the client's ``X-Request-Id`` (or made) and sent back with the answer.

The id is kept in a context variable for the request's task, so log lines carry it
(see paddler/logs/py).
"""

from __future__ import annotations

import re
import uuid

from quart import Quart, Response, request

from paddler.logs import current_request_id

REQUEST_ID_HEADER = "X-Request-Id"
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def install_request_ids(app: Quart) -> None:
    app.before_request(_take_request_id)
    app.after_request(_return_request_id)


def request_id_from(header: str | None) -> str:
    """The client's id if it is a sane token, else a new one."""
    if header and _ACCEPTABLE.fullmatch(header):
        return header
    return uuid.uuid4().hex


async def _take_request_id() -> None:
    current_request_id.set(request_id_from(request.headers.get(REQUEST_ID_HEADER)))


async def _return_request_id(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = current_request_id.get() or ""
    return response
