"""Fetching a model over http(s) with httpx, resuming with a Range request."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

import httpx

from agent.model_sources.transfer import Transfer
from paddler.model_source import ModelSourceError

DEFAULT_STALL_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0
CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")


def fetch_http(
    transfer: Transfer, url: str, *, stall_timeout: float = DEFAULT_STALL_SECONDS
) -> None:
    """One attempt: get the rest of ``url`` into ``transfer`` (all of it when nothing is on disk
    or the server's copy changed since). A server that sends nothing for ``stall_timeout``
    seconds fails the attempt (the next one resumes)."""
    timeout = httpx.Timeout(stall_timeout, connect=min(stall_timeout, CONNECT_TIMEOUT_SECONDS))
    offset = transfer.resume_from
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        validator = transfer.stored_validator
        if validator:
            headers["If-Range"] = validator  # changed since: the server sends it all (200)
    try:
        with httpx.stream(
            "GET", url, headers=headers, follow_redirects=True, timeout=timeout
        ) as response:
            if response.status_code == 416 and offset:
                transfer.discard()  # more on disk than the server has: start over
                return fetch_http(transfer, url, stall_timeout=stall_timeout)
            _check_status(response, url)
            start, total = _extent(response, url)
            if start != offset and start != 0:
                transfer.discard()
                raise ModelSourceError(
                    f"{shown(url)} answered a different range than asked for", transient=True
                )
            transfer.start(offset=start, total=total, validator=_validator(response))
            for chunk in response.iter_raw():  # as it comes: a broken body keeps what arrived
                transfer.write(chunk)
    except httpx.ReadTimeout as error:
        raise ModelSourceError(
            f"{shown(url)} sent nothing for {stall_timeout:g}s; the download stalled",
            transient=True,
        ) from error
    except httpx.HTTPError as error:
        raise ModelSourceError(
            f"network error while downloading {shown(url)}: {error or type(error).__name__}",
            transient=True,
        ) from error
    return None


def shown(url: str) -> str:
    """``url`` without its query, which may hold a signature (presigned URLs)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _check_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status in (200, 206):
        return
    if status in (404, 410):
        raise ModelSourceError(f"no model at {shown(url)} (HTTP {status})")
    if status in (401, 403):
        raise ModelSourceError(f"access to {shown(url)} was denied (HTTP {status})")
    raise ModelSourceError(
        f"{shown(url)} answered HTTP {status} {response.reason_phrase}",
        transient=status == 429 or status >= 500,
    )


def _extent(response: httpx.Response, url: str) -> tuple[int, int | None]:
    """Where the body starts in the file, and the file's whole size when the server says."""
    length = response.headers.get("content-length")
    if response.status_code == 200:
        return 0, int(length) if length and length.isdigit() else None
    match = CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
    if match is None:
        raise ModelSourceError(f"a partial answer without a valid Content-Range from {shown(url)}")
    start, total = match.groups()
    return int(start), None if total == "*" else int(total)


def _validator(response: httpx.Response) -> str | None:
    """What If-Range may carry on resume: a strong ETag, else Last-Modified."""
    etag = str(response.headers.get("etag", ""))
    if etag and not etag.startswith("W/"):
        return etag
    return str(response.headers.get("last-modified", "")) or None
