"""A websocket served straight on ASGI, with what the agent socket needs of one.

Quart puts two tasks and a queue of its own between the server and a websocket handler, and a
context-local lookup in front of every call; an agent's frames come by the thousand a second,
so the agent socket reads the server's messages directly instead.
"""

from __future__ import annotations

import contextlib

from control_plane.asgi import Receive, Scope, Send, request_headers

_HTTP_REFUSAL = "websocket.http.response"


class WebsocketClosed(Exception):
    """The peer closed the websocket, or the connection broke."""

    def __init__(self, code: int) -> None:
        super().__init__(f"websocket closed with code {code}")
        self.code = code


class AsgiWebsocket:
    """One websocket connection."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.headers = request_headers(scope)
        self.accepted = False
        self.closed = False

    @property
    def remote_address(self) -> str | None:
        client = self.scope.get("client")
        return str(client[0]) if client else None

    async def accept(self) -> None:
        self.accepted = True
        try:
            await self._send({"type": "websocket.accept"})
        except OSError as error:  # the server's "client disconnected"
            self.closed = True
            raise WebsocketClosed(1006) from error

    async def refuse(self, status: int, text: str) -> None:
        """Answer the handshake with an HTTP error instead of accepting it; a server that cannot
        send one closes the handshake (which it answers with 403)."""
        self.closed = True
        with contextlib.suppress(OSError):  # the server's "client disconnected"
            if _HTTP_REFUSAL not in (self.scope.get("extensions") or {}):
                await self._send({"type": "websocket.close", "code": 1008})
                return
            body = text.encode()
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ]
            start = {"type": "websocket.http.response.start", "status": status, "headers": headers}
            await self._send(start)
            await self._send({"type": "websocket.http.response.body", "body": body})

    async def receive(self) -> str | bytes:
        """The next frame's data; :class:`WebsocketClosed` once the peer is gone."""
        while True:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text: str | None = message.get("text")
                return text if text is not None else message.get("bytes") or b""
            if kind == "websocket.disconnect":
                self.closed = True
                raise WebsocketClosed(int(message.get("code", 1005)))
            # "websocket.connect", which servers send first (and Quart's test client does not)

    async def send(self, text: str) -> None:
        """Send a text frame. A frame for a peer that is gone is dropped: the reader of this
        socket learns that the peer left from :meth:`receive`."""
        if self.closed:
            return
        try:
            await self._send({"type": "websocket.send", "text": text})
        except OSError:  # the server's "client disconnected"
            self.closed = True

    async def close(self, code: int, reason: str = "") -> None:
        """Close the websocket, once; nothing to do when it is closed already."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
