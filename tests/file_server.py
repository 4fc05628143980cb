"""A real HTTP file server on 127.0.0.1 for download tests: Range and If-Range, an ETag, a log
of what each request asked for and got, and a switch that drops a response half way."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RANGE = re.compile(r"bytes=(\d+)-")
THROTTLED_CHUNK_BYTES = 16_384


@dataclass
class ServedRequest:
    path: str
    range: str | None
    status: int = 0
    bytes_sent: int = 0


@dataclass
class FileServer:
    files: dict[str, bytes]
    requests: list[ServedRequest] = field(default_factory=list)
    cut_next_after: int | None = None  # the next body stops (connection closed) after this many
    bytes_per_second: int | None = None  # send bodies this slowly (None: at once)

    def __post_init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/{path.lstrip('/')}"

    @staticmethod
    def etag(content: bytes) -> str:
        return '"' + hashlib.sha256(content).hexdigest()[:16] + '"'


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].lstrip("/")
            served = ServedRequest(path, self.headers.get("Range"))
            server.requests.append(served)
            content = server.files.get(path)
            if content is None:
                self._answer(served, 404, b"not found")
                return
            etag = FileServer.etag(content)
            match = RANGE.fullmatch(served.range or "")
            if_range = self.headers.get("If-Range")
            if match is None or (if_range is not None and if_range != etag):
                self._answer(served, 200, content, ETag=etag)
                return
            start = int(match.group(1))
            if start >= len(content):
                self._answer(served, 416, b"", **{"Content-Range": f"bytes */{len(content)}"})
                return
            extent = f"bytes {start}-{len(content) - 1}/{len(content)}"
            self._answer(served, 206, content[start:], ETag=etag, **{"Content-Range": extent})

        def _answer(self, served: ServedRequest, status: int, body: bytes, **headers: str) -> None:
            served.status = status
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if server.cut_next_after is not None and status in (200, 206):
                body, server.cut_next_after = body[: server.cut_next_after], None
                self.close_connection = True
            step = len(body) if server.bytes_per_second is None else THROTTLED_CHUNK_BYTES
            for start in range(0, len(body), max(1, step)):
                self.wfile.write(body[start : start + step])
                self.wfile.flush()
                if server.bytes_per_second is not None:
                    time.sleep(step / server.bytes_per_second)
            served.bytes_sent = len(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
