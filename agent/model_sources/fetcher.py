"""Turn a model source into a model file on disk, downloading it into the cache if remote."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
import time
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.model_sources.http_download import DEFAULT_STALL_SECONDS, fetch_http, shown
from agent.model_sources.s3_download import fetch_s3, s3_client
from agent.model_sources.transfer import (
    DEFAULT_MAX_MODEL_BYTES,
    READ_CHUNK_BYTES,
    DownloadProgress,
    ProgressCallback,
    Transfer,
    cache_lock,
    cached,
    forget_download,
)
from paddler.model_source import ModelSource, ModelSourceError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger("paddler.agent.model")

DEFAULT_ATTEMPTS = 4


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/paddler/models``, by default ``~/.cache/paddler/models``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "paddler" / "models"


@dataclass
class ModelFetcher:
    """Knows where ``source``'s file will be (:attr:`path`) before fetching it (:meth:`fetch`).

    Network failures are retried ``attempts`` times in all, each resuming where the last one
    stopped, after ``retry_delay`` seconds doubling each time. ``s3`` is the client for
    ``s3://`` sources (default: one made from ``s3_endpoint_url``, ``s3_region`` and the
    standard AWS configuration). A download larger than ``max_bytes`` fails (at once when the
    server says its size, else once that many bytes came); an http(s) server silent for
    ``stall_timeout`` seconds fails the attempt.
    """

    source: ModelSource
    cache_dir: Path
    _: KW_ONLY
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3: S3Client | None = None
    attempts: int = DEFAULT_ATTEMPTS
    retry_delay: float = 1.0
    max_bytes: int = DEFAULT_MAX_MODEL_BYTES
    stall_timeout: float = DEFAULT_STALL_SECONDS

    @property
    def path(self) -> Path:
        if self.source.kind == "local":
            return Path(self.source.location)
        return self.source.cache_path(self.cache_dir)

    @property
    def shown_source(self) -> str:
        return shown(self.source.location) if self.source.kind == "http" else self.source.location

    async def fetch(self, on_progress: ProgressCallback) -> Path:
        """Fetch on a worker thread; ``on_progress`` is called on this event loop."""
        loop = asyncio.get_running_loop()
        cancelled = threading.Event()

        def report(progress: DownloadProgress) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
                loop.call_soon_threadsafe(on_progress, progress)

        try:
            return await asyncio.to_thread(self.fetch_blocking, report, cancelled)
        finally:
            cancelled.set()  # a cancelled fetch stops at its next chunk

    def fetch_blocking(
        self, on_progress: ProgressCallback, cancelled: threading.Event | None = None
    ) -> Path:
        cancelled = cancelled or threading.Event()
        if self.source.kind == "local":
            return self._checked_local_file()
        with cache_lock(self.path.parent, cancelled):
            if cached(self.path, self.source.sha256):
                size = self.path.stat().st_size
                logger.info("using %s, cached at %s", self.shown_source, self.path)
                on_progress(DownloadProgress(size, size))
                return self.path
            transfer = Transfer(self.path, on_progress, cancelled, max_bytes=self.max_bytes)
            return self._download(transfer)

    def forget(self) -> None:
        """Drop a downloaded copy llama.cpp could not load: the next fetch downloads again."""
        if self.source.kind != "local" and forget_download(self.path):
            logger.warning("deleted %s from the model cache: it did not load", self.path)

    def _download(self, transfer: Transfer) -> Path:
        started, resumed_from = time.monotonic(), transfer.resume_from
        logger.info(
            "downloading %s to %s%s",
            self.shown_source,
            self.path,
            f" (resuming after {resumed_from} bytes)" if resumed_from else "",
        )
        for attempt in range(1, self.attempts + 1):
            try:
                self._attempt(transfer)
                path = transfer.finish(self.source.sha256, self.shown_source)
            except ModelSourceError as error:
                if not error.transient or attempt == self.attempts:
                    raise
                delay = self.retry_delay * 2 ** (attempt - 1)
                logger.warning("%s; retrying in %.0fs, resuming", error, delay)
                if transfer.cancelled.wait(delay):
                    raise ModelSourceError("the model download was cancelled") from error
            else:
                logger.info(
                    "downloaded %s: %d bytes in %.1fs",
                    self.shown_source,
                    transfer.done,
                    time.monotonic() - started,
                )
                return path
            finally:
                transfer.close()
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _attempt(self, transfer: Transfer) -> None:
        if self.source.kind == "http":
            fetch_http(transfer, self.source.location, stall_timeout=self.stall_timeout)
            return
        if self.s3 is None:
            self.s3 = s3_client(self.s3_endpoint_url, self.s3_region)
        bucket, key = self.source.bucket_and_key
        fetch_s3(transfer, bucket, key, self.s3)

    def _checked_local_file(self) -> Path:
        path = self.path
        if not path.is_file():
            raise ModelSourceError(f"model file not found: {path}")
        if self.source.sha256 is not None:
            digest = hashlib.sha256()
            with path.open("rb") as file:
                for chunk in iter(lambda: file.read(READ_CHUNK_BYTES), b""):
                    digest.update(chunk)
            if digest.hexdigest() != self.source.sha256:
                raise ModelSourceError(
                    f"sha256 mismatch for {path}: expected {self.source.sha256}, "
                    f"got {digest.hexdigest()}"
                )
        return path
