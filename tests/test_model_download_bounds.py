"""Model downloads are bounded and checked: a body with no length cannot grow past
``max_bytes`` or stall forever, a file that is not GGUF is never cached as complete, and a
cached file llama.cpp cannot load is dropped so the next try downloads it again."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent.engine.engine import Engine
from agent.model_sources import (
    DownloadProgress,
    ModelFetcher,
    ModelSourceError,
    parse_model_source,
)
from agent.served_model import ServedModel
from paddler import protocol
from tests.file_server import FileServer


def ignore(progress: DownloadProgress) -> None:
    pass


@dataclass
class ChunkedServer:
    """A real HTTP server whose answers carry no Content-Length (``Transfer-Encoding:
    chunked``): it sends ``GGUF`` then ``chunk`` every ``pause`` seconds, ``chunks`` times
    (None: until the client goes), then stays silent while ``hang_after`` holds."""

    chunk: bytes = b"x" * 65_536
    chunks: int | None = None
    pause: float = 0.0
    hang_after: bool = False
    requests: int = 0
    _release: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _chunked_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ChunkedServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/model.gguf"


def _chunked_handler(server: ChunkedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            server.requests += 1
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                self._send(b"GGUF")
                sent = 0
                while server.chunks is None or sent < server.chunks:
                    self._send(server.chunk)
                    sent += 1
                    time.sleep(server.pause)
                if server.hang_after:
                    server._release.wait(30)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client gave up: what the test wants

        def _send(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _leftovers(cache: Path) -> list[str]:
    return sorted(path.name for path in cache.rglob("*") if path.is_file() and path.name != ".lock")


def test_an_endless_body_without_a_length_stops_at_max_bytes(tmp_path: Path) -> None:
    with ChunkedServer() as server:
        fetcher = ModelFetcher(
            parse_model_source(server.url()), tmp_path, max_bytes=1 << 20, retry_delay=0.01
        )
        with pytest.raises(ModelSourceError, match="more than max_model_bytes") as failure:
            fetcher.fetch_blocking(ignore)
    assert not failure.value.transient
    assert server.requests == 1, "a model too large is not asked for again"
    assert _leftovers(tmp_path) == [], "the part is deleted"


def test_an_announced_size_over_max_bytes_fails_before_downloading(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    content = tiny_model_path.read_bytes()
    with FileServer({"m.gguf": content}) as files:
        fetcher = ModelFetcher(parse_model_source(files.url("m.gguf")), tmp_path, max_bytes=1000)
        with pytest.raises(ModelSourceError, match=f"is {len(content)} bytes, more than"):
            fetcher.fetch_blocking(ignore)
    assert _leftovers(tmp_path) == []


def test_a_body_that_stalls_fails_after_the_stall_timeout(tmp_path: Path) -> None:
    with ChunkedServer(chunks=2, hang_after=True) as server:
        fetcher = ModelFetcher(
            parse_model_source(server.url()), tmp_path, attempts=2, retry_delay=0.01
        )
        fetcher.stall_timeout = 0.5
        with pytest.raises(ModelSourceError, match=r"sent nothing for 0\.5s; the download stalled"):
            fetcher.fetch_blocking(ignore)
    assert server.requests == 2, "a stall is retried like any network error"


def test_a_slow_body_within_the_stall_timeout_completes(tmp_path: Path) -> None:
    with ChunkedServer(chunks=5, pause=0.05) as server:
        fetcher = ModelFetcher(parse_model_source(server.url()), tmp_path)
        fetcher.stall_timeout = 5
        path = fetcher.fetch_blocking(ignore)
    assert path.read_bytes() == b"GGUF" + server.chunk * 5


@pytest.mark.parametrize("body", [b"<html>Sign in</html>", b"", b"GGU"])
def test_a_download_that_is_not_gguf_is_not_cached(tmp_path: Path, body: bytes) -> None:
    with FileServer({"m.gguf": body}) as files:
        fetcher = ModelFetcher(parse_model_source(files.url("m.gguf")), tmp_path)
        with pytest.raises(ModelSourceError, match="is not a GGUF model file") as failure:
            fetcher.fetch_blocking(ignore)
        assert not failure.value.transient
        assert _leftovers(tmp_path) == []
        with pytest.raises(ModelSourceError, match="is not a GGUF model file"):
            fetcher.fetch_blocking(ignore)
        assert len(files.requests) == 2, "nothing was cached: the second fetch asked again"


class RecordingHost:
    """Stands in for the agent runner around a ServedModel: records the states it is put in."""

    def __init__(self) -> None:
        self.state: protocol.AgentState = "ready"
        self.issues: tuple[str, ...] = ()
        self.changed = asyncio.Event()

    def set_state(self, state: protocol.AgentState, issues: tuple[str, ...] = ()) -> None:
        self.state, self.issues = state, issues
        self.changed.set()

    def report_status(self) -> None:
        pass

    async def jobs_finished(self) -> None:
        pass

    async def settled(self) -> protocol.AgentState:
        while True:
            self.changed.clear()
            if self.state in ("ready", "error"):
                return self.state
            await asyncio.wait_for(self.changed.wait(), 60)


async def test_a_cached_model_that_does_not_load_is_downloaded_again(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    broken = b"GGUF" + b"\0" * 4096  # a GGUF header llama.cpp cannot load
    model_bytes = await asyncio.to_thread(tiny_model_path.read_bytes)
    cache = tmp_path / "cache"
    engine = Engine(tiny_model_path, 1, context_size=256, threads=1)
    await engine.load()
    host = RecordingHost()
    served = ServedModel(
        engine,
        host,
        resolve_model=lambda source: ModelFetcher(parse_model_source(source), cache),
    )
    with FileServer({"m.gguf": broken}) as files:
        desired = protocol.DesiredState(version=1, model_source=files.url("m.gguf"), slots=1)
        host.state = "loading"
        served.offer(desired)
        assert await host.settled() == "error"
        assert "could not be applied" in host.issues[0]
        assert _leftovers(cache) == [], "the file that did not load left the cache"

        files.files["m.gguf"] = model_bytes
        host.state = "loading"
        served.offer(desired.model_copy(update={"version": 2}))
        assert await host.settled() == "ready", host.issues
        assert served.applied_version == 2
        assert [request.status for request in files.requests] == [200, 200]
    served.engine.close()
