"""What a model source string names: a local file, an http(s) URL or an S3 object."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit


class ModelSourceError(Exception):
    """The model could not be fetched. ``transient`` failures (network) are worth retrying."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


SourceKind = Literal["local", "http", "s3"]

SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ModelSource:
    """A parsed model source. ``location`` is the path or the URL without its fragment."""

    text: str  # as the operator wrote it
    kind: SourceKind
    location: str
    sha256: str | None  # expected digest (lower-case hex), when known

    @property
    def file_name(self) -> str:
        """The model file's name: the path's last component, for URLs the last in the URL path."""
        if self.kind == "local":
            return Path(self.location).name
        return PurePosixPath(unquote(urlsplit(self.location).path)).name

    @property
    def bucket_and_key(self) -> tuple[str, str]:
        parts = urlsplit(self.location)
        return parts.netloc, parts.path.lstrip("/")

    def cache_path(self, cache_dir: Path) -> Path:
        """Where a remote source is kept: one directory per location, named by its digest."""
        digest = hashlib.sha256(self.location.encode()).hexdigest()[:16]
        return cache_dir / digest / self.file_name


def parse_model_source(text: str, sha256: str = "") -> ModelSource:
    """Parse ``text`` (a path, ``http(s)://…`` or ``s3://bucket/key``, a URL optionally ending
    in ``#sha256=<hex>``); ``sha256`` is a digest given separately, which must agree with it."""
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if not scheme:
        return ModelSource(text, "local", text, _digest(sha256, None, text))
    if scheme not in ("http", "https", "s3"):
        raise ModelSourceError(
            f"unsupported model source {text!r}: give a file path, an http(s):// URL or s3://"
        )
    parts = urlsplit(text)
    fragment_digest = _fragment_digest(parts.fragment, text)
    location = urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
    source = ModelSource(
        text,
        "s3" if scheme == "s3" else "http",
        location,
        _digest(sha256, fragment_digest, text),
    )
    if not parts.netloc:
        raise ModelSourceError(f"model source {text!r} names no host or bucket")
    if source.file_name in ("", ".", ".."):
        raise ModelSourceError(f"model source {text!r} names no file")
    return source


def _fragment_digest(fragment: str, text: str) -> str | None:
    if not fragment:
        return None
    name, _, value = fragment.partition("=")
    if name != "sha256":
        raise ModelSourceError(f"model source {text!r}: the only fragment allowed is #sha256=<hex>")
    return _checked_digest(value, text)


def _digest(setting: str, fragment: str | None, text: str) -> str | None:
    given = _checked_digest(setting, text) if setting else None
    if given and fragment and given != fragment:
        raise ModelSourceError(
            f"model_sha256 {given} disagrees with the #sha256 fragment of {text!r}"
        )
    return given or fragment


def _checked_digest(value: str, text: str) -> str:
    digest = value.strip().lower()
    if not SHA256_PATTERN.fullmatch(digest):
        raise ModelSourceError(f"not a sha256 digest (64 hex digits) for {text!r}: {value!r}")
    return digest
