"""Model sources: parsing, and downloads over http from a real local server (resume, sha256
check, cache reuse, errors)."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.model_sources import (
    DownloadProgress,
    ModelFetcher,
    ModelSourceError,
    parse_model_source,
)
from tests.file_server import FileServer
from tests.processes import free_port

MODEL_NAME = "models/tiny-llama.gguf"


@pytest.fixture
def model_bytes(tiny_model_path: Path) -> bytes:
    return tiny_model_path.read_bytes()


@pytest.fixture
def server(model_bytes: bytes) -> Iterator[FileServer]:
    with FileServer({MODEL_NAME: model_bytes}) as running:
        yield running


def ignore(progress: DownloadProgress) -> None:
    pass


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def fetcher(source: str, cache: Path, *, sha: str = "", attempts: int = 4) -> ModelFetcher:
    return ModelFetcher(parse_model_source(source, sha), cache, attempts=attempts, retry_delay=0.01)


@pytest.mark.parametrize(
    ("text", "kind", "file_name"),
    [
        ("/models/a.gguf", "local", "a.gguf"),
        ("relative/b.Q4.gguf", "local", "b.Q4.gguf"),
        ("https://host/dir/c.gguf?X-Amz-Signature=abc", "http", "c.gguf"),
        ("http://host:8080/d%20e.gguf#sha256=" + "a" * 64, "http", "d e.gguf"),
        ("s3://bucket/models/f.gguf", "s3", "f.gguf"),
    ],
)
def test_sources_are_parsed(text: str, kind: str, file_name: str) -> None:
    source = parse_model_source(text)
    assert (source.kind, source.file_name, source.text) == (kind, file_name, text)


def test_a_url_fragment_or_a_setting_gives_the_digest() -> None:
    digest = "ab" * 32
    assert parse_model_source(f"s3://b/k.gguf#sha256={digest.upper()}").sha256 == digest
    assert parse_model_source("https://h/m.gguf", digest).sha256 == digest
    assert parse_model_source("https://h/m.gguf#sha256=" + digest).location == "https://h/m.gguf"


@pytest.mark.parametrize(
    ("text", "sha", "message"),
    [
        ("ftp://host/m.gguf", "", "unsupported model source"),
        ("s3://bucket/", "", "names no file"),
        ("https:///m.gguf", "", "names no host"),
        ("https://h/m.gguf#md5=00", "", "only fragment allowed"),
        ("https://h/m.gguf", "xyz", "not a sha256 digest"),
        ("https://h/m.gguf#sha256=" + "a" * 64, "b" * 64, "disagrees"),
    ],
)
def test_bad_sources_are_refused(text: str, sha: str, message: str) -> None:
    with pytest.raises(ModelSourceError, match=message):
        parse_model_source(text, sha)


def test_download_reports_progress_on_the_event_loop(
    server: FileServer, model_bytes: bytes, tmp_path: Path
) -> None:
    source = fetcher(server.url(MODEL_NAME), tmp_path)
    seen: list[tuple[DownloadProgress, int]] = []

    async def fetch() -> Path:
        return await source.fetch(lambda p: seen.append((p, threading.get_ident())))

    path = asyncio.run(fetch())

    assert path == source.path and path.parent.parent == tmp_path
    assert path.name == "tiny-llama.gguf"
    assert path.read_bytes() == model_bytes
    assert not path.with_name(path.name + ".part").exists()
    assert {thread for _, thread in seen} == {threading.get_ident()}
    done = [progress.done_bytes for progress, _ in seen]
    assert done == sorted(done)
    assert seen[-1][0].fraction == 1.0 and seen[-1][0].done_bytes == len(model_bytes)


def test_matching_sha256_is_accepted(
    server: FileServer, model_bytes: bytes, tmp_path: Path
) -> None:
    url = server.url(MODEL_NAME) + "#sha256=" + sha256(model_bytes)
    assert fetcher(url, tmp_path).fetch_blocking(ignore).read_bytes() == model_bytes


def test_sha256_mismatch_deletes_the_download(server: FileServer, tmp_path: Path) -> None:
    source = fetcher(server.url(MODEL_NAME), tmp_path, sha="0" * 64)
    with pytest.raises(ModelSourceError, match=r"sha256 mismatch.*deleted") as raised:
        source.fetch_blocking(ignore)
    assert not raised.value.transient
    assert list(source.path.parent.glob("*.gguf*")) == []
    assert len(server.requests) == 1, "a wrong file is not fetched again"


def test_a_broken_download_resumes_where_it_stopped(
    server: FileServer, model_bytes: bytes, tmp_path: Path
) -> None:
    half = len(model_bytes) // 2
    server.cut_next_after = half
    path = fetcher(server.url(MODEL_NAME), tmp_path, sha=sha256(model_bytes)).fetch_blocking(ignore)

    assert path.read_bytes() == model_bytes
    first, second = server.requests
    assert (first.status, first.bytes_sent) == (200, half)
    assert (second.range, second.status) == (f"bytes={half}-", 206)
    assert second.bytes_sent == len(model_bytes) - half, "only the rest was fetched"


def test_a_part_left_by_another_process_is_resumed(
    server: FileServer, model_bytes: bytes, tmp_path: Path
) -> None:
    source = fetcher(server.url(MODEL_NAME), tmp_path)
    source.path.parent.mkdir(parents=True)
    kept = len(model_bytes) // 3
    source.path.with_name(source.path.name + ".part").write_bytes(model_bytes[:kept])

    assert source.fetch_blocking(ignore).read_bytes() == model_bytes
    [request] = server.requests
    assert request.range == f"bytes={kept}-"
    assert request.bytes_sent == len(model_bytes) - kept


def test_a_file_changed_on_the_server_is_fetched_whole_on_resume(
    server: FileServer, model_bytes: bytes, tmp_path: Path
) -> None:
    server.cut_next_after = 1000
    changed = model_bytes[:4] + model_bytes[4:][::-1]  # another file, still GGUF

    def change_the_file(progress: DownloadProgress) -> None:
        server.files[MODEL_NAME] = changed  # after the first bytes arrived

    path = fetcher(server.url(MODEL_NAME), tmp_path).fetch_blocking(change_the_file)

    assert path.read_bytes() == changed
    assert [r.status for r in server.requests] == [200, 200], "If-Range saw the new ETag"


def test_a_cached_file_is_used_without_asking_the_server(
    server: FileServer, model_bytes: bytes, tmp_path: Path
) -> None:
    url = server.url(MODEL_NAME)
    first = fetcher(url, tmp_path, sha=sha256(model_bytes)).fetch_blocking(ignore)
    seen: list[DownloadProgress] = []
    again = fetcher(url, tmp_path, sha=sha256(model_bytes)).fetch_blocking(seen.append)
    without_digest = fetcher(url, tmp_path).fetch_blocking(ignore)

    assert first == again == without_digest
    assert len(server.requests) == 1
    assert [p.fraction for p in seen] == [1.0]


def test_a_cached_file_with_another_digest_is_fetched_again(
    server: FileServer, model_bytes: bytes, tmp_path: Path
) -> None:
    url = server.url(MODEL_NAME)
    fetcher(url, tmp_path).fetch_blocking(ignore)
    server.files[MODEL_NAME] = changed = model_bytes[:4] + model_bytes[4:][::-1]
    path = fetcher(url, tmp_path, sha=sha256(changed)).fetch_blocking(ignore)
    assert path.read_bytes() == changed
    assert len(server.requests) == 2


def test_missing_file_is_a_clear_error_and_not_retried(server: FileServer, tmp_path: Path) -> None:
    url = server.url("models/absent.gguf") + "?token=secret"
    with pytest.raises(
        ModelSourceError, match=r"no model at http://.*/absent.gguf \(HTTP 404\)"
    ) as raised:
        fetcher(url, tmp_path).fetch_blocking(ignore)
    assert len(server.requests) == 1
    assert "secret" not in str(raised.value), "query strings (signatures) are not shown"


def test_an_unreachable_server_is_retried_then_reported(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/m.gguf"
    with pytest.raises(ModelSourceError, match="network error while downloading") as raised:
        fetcher(url, tmp_path, attempts=2).fetch_blocking(ignore)
    assert raised.value.transient


def test_local_files_are_checked(tiny_model_path: Path, model_bytes: bytes, tmp_path: Path) -> None:
    local = fetcher(str(tiny_model_path), tmp_path, sha=sha256(model_bytes))
    assert local.fetch_blocking(ignore) == tiny_model_path
    with pytest.raises(ModelSourceError, match="sha256 mismatch"):
        fetcher(str(tiny_model_path), tmp_path, sha="1" * 64).fetch_blocking(ignore)
    with pytest.raises(ModelSourceError, match="model file not found"):
        fetcher(str(tmp_path / "absent.gguf"), tmp_path).fetch_blocking(ignore)
    assert list(tmp_path.iterdir()) == [], "local models are not copied into the cache"
