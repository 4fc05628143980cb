"""TLS ended by a reverse proxy: believe its ``X-Forwarded-Proto``, and nobody else's.

A request whose peer address is one of the configured trusted proxies, carrying
``X-Forwarded-Proto: https``, is served as an https request (``wss`` for a websocket), so the
session cookie gets ``Secure`` and links name https. The header from any other peer is ignored:
a client cannot make itself look secure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from control_plane.asgi import AsgiApp, Scope
from control_plane.settings import Network

FORWARDED_PROTO = b"x-forwarded-proto"
TLS_SCHEMES = {"http": "https", "websocket": "wss"}


class ForwardedProto:
    """ASGI middleware in front of the management app."""

    def __init__(self, app: AsgiApp, trusted: Sequence[Network]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] in TLS_SCHEMES and self._says_tls(scope):
            scope = {**scope, "scheme": TLS_SCHEMES[scope["type"]]}
        await self.app(scope, receive, send)

    def _says_tls(self, scope: Scope) -> bool:
        if not self.trusted or not self._from_trusted_proxy(scope.get("client")):
            return False
        values = [value for name, value in scope.get("headers", ()) if name == FORWARDED_PROTO]
        if not values:
            return False
        # A proxy that appends to a client's header puts its own word last.
        last: bytes = values[-1].split(b",")[-1].strip().lower()
        return last == b"https"

    def _from_trusted_proxy(self, client: Any) -> bool:
        if not client:
            return False
        try:
            address = ipaddress.ip_address(str(client[0]))
        except ValueError:
            return False
        return any(address in network for network in self.trusted)
