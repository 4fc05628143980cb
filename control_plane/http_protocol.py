"""Uvicorn's HTTP protocol, letting go of a connection its client reset at once.

Uvicorn (0.54) arms a keep-alive timer after each response and cancels it when the
connection is lost cleanly, but not when it is lost with an error (a client or proxy that
resets it, a read error): the timer, and through it the connection's protocol, transport,
last request and its scope, then live for the whole ``timeout_keep_alive`` (75 s here). A
surge of streams whose clients reset their sockets would hold that memory long after they
left; proxies that close idle connections with a reset make every request such a one.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HttpProtocol(HttpToolsProtocol):
    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        timer = self.timeout_keep_alive_task
        if timer is not None:
            timer.cancel()
            self.timeout_keep_alive_task = None
