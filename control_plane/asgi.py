"""What the control plane's ASGI layers (direct routes, the agent socket, the forwarded-proto
middleware) share: the ASGI callables' types, and request headers as Quart reads them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Any, Any, Any], Awaitable[None]]


def request_headers(scope: Scope, wanted: Collection[bytes] | None = None) -> dict[str, str]:
    """The request headers by lowercase name (those in ``wanted``, as ASGI names them, if
    given); the first of each, as Quart's ``headers.get`` gives it."""
    found: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        if wanted is None or name in wanted:
            found.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return found
