"""s3:// model sources against a real LocalStack S3: download with sha256 check, resume,
missing keys."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent.model_sources import DownloadProgress, ModelFetcher, ModelSourceError
from agent.model_sources import parse_model_source as parse
from tests.localstack_fixtures import LocalStack, localstack

__all__ = ["localstack"]  # the session fixture, imported for pytest


def ignore(progress: DownloadProgress) -> None:
    pass


def upload(localstack: LocalStack, content: bytes, **metadata: str) -> str:
    """Put ``content`` under a fresh key of the seeded bucket; its s3:// URL."""
    bucket = localstack.seeded["bucket"]
    key = f"tests/{uuid.uuid4().hex}/tiny-llama.gguf"
    localstack.client("s3").put_object(Bucket=bucket, Key=key, Body=content, Metadata=metadata)
    return f"s3://{bucket}/{key}"


def ranges_asked(client: Any) -> list[str | None]:
    """The Range of every GetObject ``client`` sends, seen through botocore's event hooks."""
    asked: list[str | None] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        asked.append(params.get("Range"))

    client.meta.events.register("provide-client-params.s3.GetObject", record)
    return asked


def test_download_with_sha256_check(
    localstack: LocalStack, tiny_model_path: Path, tmp_path: Path
) -> None:
    content = tiny_model_path.read_bytes()
    url = upload(localstack, content)
    digest = hashlib.sha256(content).hexdigest()
    seen: list[DownloadProgress] = []
    fetcher = ModelFetcher(parse(url, digest), tmp_path, s3=localstack.client("s3"))

    path = fetcher.fetch_blocking(seen.append)

    assert path.read_bytes() == content and path.name == "tiny-llama.gguf"
    assert seen[-1].fraction == 1.0
    assert [p.done_bytes for p in seen] == sorted(p.done_bytes for p in seen)


def test_the_objects_own_sha256_metadata_is_checked(
    localstack: LocalStack, tiny_model_path: Path, tmp_path: Path
) -> None:
    url = upload(localstack, tiny_model_path.read_bytes(), sha256="0" * 64)
    fetcher = ModelFetcher(parse(url), tmp_path, s3=localstack.client("s3"))
    with pytest.raises(ModelSourceError, match=r"sha256 mismatch.*expected 0000"):
        fetcher.fetch_blocking(ignore)
    assert not fetcher.path.exists()


def test_a_partial_download_is_resumed_with_a_ranged_get(
    localstack: LocalStack, tiny_model_path: Path, tmp_path: Path
) -> None:
    content = tiny_model_path.read_bytes()
    url = upload(localstack, content, sha256=hashlib.sha256(content).hexdigest())
    client = localstack.client("s3")
    asked = ranges_asked(client)
    fetcher = ModelFetcher(parse(url), tmp_path, s3=client)
    fetcher.path.parent.mkdir(parents=True)
    kept = len(content) // 2
    fetcher.path.with_name(fetcher.path.name + ".part").write_bytes(content[:kept])

    assert fetcher.fetch_blocking(ignore).read_bytes() == content
    assert asked == [f"bytes={kept}-"], "only the rest was fetched"

    assert fetcher.fetch_blocking(ignore).read_bytes() == content
    assert len(asked) == 1, "the cached file is used again"


def test_a_missing_key_is_a_clear_error(localstack: LocalStack, tmp_path: Path) -> None:
    url = f"s3://{localstack.seeded['bucket']}/no/such/model.gguf"
    fetcher = ModelFetcher(parse(url), tmp_path, s3=localstack.client("s3"))
    with pytest.raises(
        ModelSourceError, match=r"cannot read s3://.*/no/such/model.gguf: no such key"
    ) as raised:
        fetcher.fetch_blocking(ignore)
    assert not raised.value.transient
