"""The JSON objects every OpenAI-compatible endpoint shares: ids and headers, finish reasons,
usage, embeddings, the model list and server-sent events (chat and completion objects are in
:mod:`~control_plane.inference.chat_objects`, :mod:`~control_plane.inference.chat_chunks` and
:mod:`~control_plane.inference.text_objects`).

Every builder returns a plain, JSON-ready ``dict`` shaped like OpenAI's own responses, so that
the official SDKs parse them. Streaming responses are server-sent events made with
:func:`sse_event` and terminated by ``sse_event("[DONE]")``.
"""

from __future__ import annotations

import base64
import secrets
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from control_plane import json_bodies, server_sent_events
from paddler.protocol import FinishReason, JobKind, Usage

JsonObject = dict[str, Any]

DONE = "[DONE]"
OWNED_BY = "paddler"

_ID_PREFIXES: dict[JobKind, str] = {"chat": "chatcmpl-", "completion": "cmpl-"}

# No "cancelled": a generation the server cut short is answered with an error, never passed
# off as whole (the scheduler turns it into one).
_OPENAI_FINISH_REASONS: dict[FinishReason, str] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
}


@dataclass(frozen=True)
class Header:
    """What every completion object and chunk of one answer starts with."""

    id: str
    created: int
    model: str

    @classmethod
    def new(cls, kind: JobKind, model: str) -> Header:
        return cls(new_completion_id(kind), int(time.time()), model)

    def fields(self, object_type: str) -> JsonObject:
        return {"id": self.id, "object": object_type, "created": self.created, "model": self.model}


def new_completion_id(kind: JobKind) -> str:
    """A fresh id such as ``chatcmpl-<hex>`` (chat) or ``cmpl-<hex>`` (completion)."""
    return _ID_PREFIXES[kind] + secrets.token_hex(12)


def openai_finish_reason(finish_reason: FinishReason | None) -> str | None:
    return None if finish_reason is None else _OPENAI_FINISH_REASONS[finish_reason]


def usage_object(usage: Usage) -> JsonObject:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


# -- embeddings ------------------------------------------------------------------------------


def embedding_list(
    model: str,
    vectors: Sequence[Sequence[float]],
    prompt_tokens: int,
    *,
    encoding_format: Literal["float", "base64"] = "float",
) -> JsonObject:
    """The body of ``POST /v1/embeddings``: one embedding per input, in input order."""
    encode = base64_float32 if encoding_format == "base64" else list
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encode(vector)}
            for index, vector in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def base64_float32(vector: Sequence[float]) -> str:
    """The vector as little-endian float32 values in base64, as OpenAI's ``base64`` format."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


# -- models ----------------------------------------------------------------------------------


def models_list(names: list[str], created: Mapping[str, int] | int) -> JsonObject:
    """The body of ``GET /v1/models``.

    ``created`` is either one timestamp for every model or a timestamp per model name; a name
    missing from the mapping gets 0.
    """
    return {
        "object": "list",
        "data": [
            {
                "id": name,
                "object": "model",
                "created": created if isinstance(created, int) else created.get(name, 0),
                "owned_by": OWNED_BY,
            }
            for name in names
        ],
    }


# -- server-sent events ----------------------------------------------------------------------


def sse_event(data: Mapping[str, Any] | str) -> bytes:
    """A ``data:`` event; a ``str`` (such as ``"[DONE]"``) is sent verbatim, not as JSON."""
    if isinstance(data, str):
        return server_sent_events.event(data)
    return server_sent_events.json_event(json_bodies.dumps(data))
