"""Downloading into the model cache, whatever the transport.

Bytes go to ``<file>.part``, hashed as they arrive; a later attempt appends to what an earlier
one left. Once complete (and its sha256 checked, when known) the part is renamed into place, so
a file under its final name is always whole. ``<file>.json`` beside it records the download:
the server's validator (ETag) a resume must match, and, once complete, the size and digest that
let the next start reuse the file without asking the server. A download larger than its cap, or
one that is not a GGUF file, is deleted rather than kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

from paddler.model_source import ModelSourceError

PROGRESS_INTERVAL_SECONDS = 0.25
READ_CHUNK_BYTES = 1 << 20
DEFAULT_MAX_MODEL_BYTES = 200 << 30
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class DownloadProgress:
    done_bytes: int
    total_bytes: int | None  # None: the server did not say

    @property
    def fraction(self) -> float | None:
        if self.total_bytes is None:
            return None
        if self.total_bytes == 0:
            return 1.0
        return min(1.0, self.done_bytes / self.total_bytes)


ProgressCallback = Callable[[DownloadProgress], None]


class Transfer:
    """One file's download, resumable across attempts (and across processes)."""

    def __init__(
        self,
        destination: Path,
        on_progress: ProgressCallback,
        cancelled: threading.Event,
        *,
        max_bytes: int = DEFAULT_MAX_MODEL_BYTES,
    ) -> None:
        self.destination = destination
        self.max_bytes = max_bytes
        self.part = destination.with_name(destination.name + ".part")
        self.record = destination.with_name(destination.name + ".json")
        self.on_progress = on_progress
        self.cancelled = cancelled
        self.total: int | None = None
        self.done = 0
        self.remote_sha256: str | None = None  # a digest the server keeps with the object
        self._validator: str | None = None
        self._hash = hashlib.sha256()
        self._file: IO[bytes] | None = None
        self._reported_at = 0.0

    @property
    def resume_from(self) -> int:
        """Bytes already on disk from an earlier attempt."""
        return self.part.stat().st_size if self.part.is_file() else 0

    @property
    def stored_validator(self) -> str | None:
        """The ETag the bytes on disk came with, if known: resume only while it still holds."""
        validator = read_record(self.record).get("validator")
        return validator if isinstance(validator, str) and self.resume_from else None

    def start(
        self,
        *,
        offset: int,
        total: int | None,
        validator: str | None,
        remote_sha256: str | None = None,
    ) -> None:
        """The server's bytes begin at ``offset`` (0, or :attr:`resume_from` to resume)."""
        self.close()
        if total is not None and total > self.max_bytes:
            self._refuse_size(f"is {total} bytes")
        if offset > self.resume_from:
            raise ValueError(f"cannot resume at {offset}: only {self.resume_from} bytes on disk")
        self.total, self._validator, self.remote_sha256 = total, validator, remote_sha256
        self._hash = hashlib.sha256()
        with self.part.open("ab") as file:
            file.truncate(offset)
        with self.part.open("rb") as file:
            for chunk in iter(lambda: file.read(READ_CHUNK_BYTES), b""):
                self._hash.update(chunk)
        self.done = offset
        write_record(self.record, {"validator": validator, "total": total, "complete": False})
        self._file = self.part.open("ab")
        self._report(force=True)

    def write(self, chunk: bytes) -> None:
        if self.cancelled.is_set():
            raise ModelSourceError("the model download was cancelled")
        assert self._file is not None, "start() first"
        if self.done + len(chunk) > self.max_bytes:
            self._refuse_size(f"passed {self.max_bytes} bytes and was still coming")
        self._file.write(chunk)
        self._hash.update(chunk)
        self.done += len(chunk)
        self._report()

    def discard(self) -> None:
        """Forget the bytes on disk: the next attempt starts from the beginning."""
        self.close()
        self.part.unlink(missing_ok=True)
        self.record.unlink(missing_ok=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def finish(self, expected_sha256: str | None, what: str) -> Path:
        """Check the bytes, then move them under their final name."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
        self.close()
        if self.total is not None and self.done != self.total:
            raise ModelSourceError(
                f"the download of {what} stopped after {self.done} of {self.total} bytes",
                transient=True,
            )
        with self.part.open("rb") as file:
            head = file.read(len(GGUF_MAGIC))
        if head != GGUF_MAGIC:
            self.discard()
            raise ModelSourceError(
                f"{what} is not a GGUF model file (it starts with {head!r}); "
                "the downloaded file was deleted"
            )
        digest = self._hash.hexdigest()
        wanted = expected_sha256 or self.remote_sha256
        if wanted is not None and digest != wanted:
            self.discard()
            raise ModelSourceError(
                f"sha256 mismatch for {what}: expected {wanted}, got {digest}; "
                "the downloaded file was deleted"
            )
        write_record(
            self.record,
            {"validator": self._validator, "size": self.done, "sha256": digest, "complete": True},
        )
        os.replace(self.part, self.destination)
        self.total = self.done
        self._report(force=True)
        return self.destination

    def _refuse_size(self, size: str) -> NoReturn:
        self.discard()
        raise ModelSourceError(
            f"the model {size}, more than max_model_bytes ({self.max_bytes}); "
            "the downloaded part was deleted"
        )

    def _report(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._reported_at >= PROGRESS_INTERVAL_SECONDS:
            self._reported_at = now
            self.on_progress(DownloadProgress(self.done, self.total))


def cached(destination: Path, expected_sha256: str | None) -> bool:
    """Whether ``destination`` is a complete earlier download (of the expected digest)."""
    record = read_record(destination.with_name(destination.name + ".json"))
    if not destination.is_file() or record.get("complete") is not True:
        return False
    if record.get("size") != destination.stat().st_size:
        return False
    return expected_sha256 is None or record.get("sha256") == expected_sha256


def forget_download(destination: Path) -> bool:
    """Delete ``destination`` if it is a complete earlier download (a model llama.cpp could
    not load), so the next fetch downloads it again; a file the cache did not write is kept."""
    record = destination.with_name(destination.name + ".json")
    if read_record(record).get("complete") is not True:
        return False
    destination.unlink(missing_ok=True)
    record.unlink(missing_ok=True)
    return True


@contextlib.contextmanager
def cache_lock(directory: Path, cancelled: threading.Event) -> Iterator[None]:
    """Hold ``directory``'s lock: agents sharing a cache download each file once, in turn."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if cancelled.wait(0.2):
                    raise ModelSourceError("the model download was cancelled") from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def write_record(path: Path, record: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(record), encoding="utf-8")
    os.replace(temporary, path)
