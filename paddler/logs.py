"""Log output: the classic text lines, or one JSON object per line (``log_format = "json"``).

Every line passes through ``redact_secrets`` on its way out, so credentials in URLs (a model
source such as ``https://user:pass@host/m.gguf`` or a presigned ``…?X-Amz-Signature=…``)
never reach a log; the management API shows model sources through the same helper.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

# The id of the client request being served, when there is one; JSON lines carry it.
current_request_id: ContextVar[str] = ContextVar("current_request_id", default="")

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

REDACTED = "REDACTED"
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_USER_INFO = re.compile(r"^([^:/?#]+://)[^/?#@]*@")
_QUERY_PAIR = re.compile(r"([?&;])([^=&;#]*)=([^&;#]*)")
# Query parameters that carry a secret: AWS (X-Amz-Signature, X-Amz-Credential,
# X-Amz-Security-Token), Google (X-Goog-Signature), Azure SAS (sig), and the usual names.
_SECRET_NAME = re.compile(
    r"sig|signature|token|key|secret|password|passwd|pwd|credential|auth|session|policy",
    re.IGNORECASE,
)


def redact_secrets(text: str) -> str:
    """``text`` with the user info of every URL in it and the values of its query parameters
    that look like secrets replaced by ``REDACTED``; everything else is left as it was."""
    return _URL.sub(lambda match: _redact_url(match.group(0)), text)


def redact_secrets_in(value: object) -> object:
    """``value`` (JSON-like: dicts, lists, strings…) with ``redact_secrets`` applied to every
    string in it."""
    if isinstance(value, str):
        return redact_secrets(value)
    if isinstance(value, dict):
        return {key: redact_secrets_in(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_secrets_in(item) for item in value]
    return value


def _redact_url(url: str) -> str:
    url = _USER_INFO.sub(lambda match: f"{match.group(1)}{REDACTED}@", url)
    return _QUERY_PAIR.sub(_redact_pair, url)


def _redact_pair(match: re.Match[str]) -> str:
    separator, name, value = match.groups()
    if _SECRET_NAME.search(name) and value:
        value = REDACTED
    return f"{separator}{name}={value}"


class RedactingFormatter(logging.Formatter):
    """Another formatter's lines, with ``redact_secrets`` applied (messages and tracebacks)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact_secrets(self.inner.format(record))


class JsonLineFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "request_id"?, "exception"?}`` per record."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id.get()
        if request_id:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str, log_format: str = "text") -> None:
    # Neither format shows the thread or the process: a record need not look them up (a
    # system call and two lookups on every line, and the control plane logs every request).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonLineFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(RedactingFormatter(formatter))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
