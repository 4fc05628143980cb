"""Builders for the JSON objects the OpenAI-compatible API answers with.

Every builder returns a plain, JSON-ready ``dict`` shaped like OpenAI's own responses, so that
the official SDKs parse them. Streaming responses are server-sent events made with
:func:`sse_event` and terminated by ``sse_event("[DONE]")``.
"""

from __future__ import annotations

import base64
import json
import secrets
import struct
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from control_plane import server_sent_events
from paddler.protocol import FinishReason, JobKind, Usage

JsonObject = dict[str, Any]

DONE = "[DONE]"
OWNED_BY = "paddler"

_ID_PREFIXES: dict[JobKind, str] = {"chat": "chatcmpl-", "completion": "cmpl-"}

# No "cancelled": a generation the server cut short is answered with an error, never passed
# off as whole (the scheduler turns it into one).
_OPENAI_FINISH_REASONS: dict[FinishReason, str] = {"stop": "stop", "length": "length"}


def new_completion_id(kind: JobKind) -> str:
    """A fresh id such as ``chatcmpl-<hex>`` (chat) or ``cmpl-<hex>`` (completion)."""
    return _ID_PREFIXES[kind] + secrets.token_hex(12)


def openai_finish_reason(finish_reason: FinishReason) -> str:
    return _OPENAI_FINISH_REASONS[finish_reason]


def _envelope(kind: str, id: str, created: int, model: str) -> JsonObject:
    """The fields every completion object and chunk starts with."""
    return {"id": id, "object": kind, "created": created, "model": model}


def usage_object(usage: Usage) -> JsonObject:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


# -- chat completions ------------------------------------------------------------------------


def chat_completion(
    id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: FinishReason,
    usage: Usage,
) -> JsonObject:
    """The body of a non-streaming ``POST /v1/chat/completions`` response."""
    return {
        **_envelope("chat.completion", id, created, model),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": openai_finish_reason(finish_reason),
            }
        ],
        "usage": usage_object(usage),
    }


def chat_chunk(
    id: str,
    created: int,
    model: str,
    *,
    role: bool = False,
    text: str | None = None,
    finish_reason: FinishReason | None = None,
) -> JsonObject:
    """One streamed chat chunk.

    The first chunk of a stream has ``role=True`` (its delta carries the assistant role and
    empty content), the middle ones carry ``text``, and the last one carries ``finish_reason``
    with an empty delta.
    """
    delta: JsonObject = {}
    if role:
        delta["role"] = "assistant"
        delta["content"] = ""
    if text is not None:
        delta["content"] = text
    return {
        **_envelope("chat.completion.chunk", id, created, model),
        "choices": [
            {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": _optional_finish_reason(finish_reason),
            }
        ],
    }


def chat_usage_chunk(id: str, created: int, model: str, usage: Usage) -> JsonObject:
    """The extra chunk sent before ``[DONE]`` when ``stream_options.include_usage`` is set."""
    return {
        **_envelope("chat.completion.chunk", id, created, model),
        "choices": [],
        "usage": usage_object(usage),
    }


# -- (legacy) text completions ---------------------------------------------------------------


def text_completion(
    id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: FinishReason,
    usage: Usage,
) -> JsonObject:
    """The body of a non-streaming ``POST /v1/completions`` response."""
    return {
        **_envelope("text_completion", id, created, model),
        "choices": [_text_choice(text, openai_finish_reason(finish_reason))],
        "usage": usage_object(usage),
    }


def text_chunk(
    id: str,
    created: int,
    model: str,
    *,
    text: str = "",
    finish_reason: FinishReason | None = None,
) -> JsonObject:
    """One streamed completion chunk; the last one carries ``finish_reason``."""
    return {
        **_envelope("text_completion", id, created, model),
        "choices": [_text_choice(text, _optional_finish_reason(finish_reason))],
    }


def text_usage_chunk(id: str, created: int, model: str, usage: Usage) -> JsonObject:
    """The extra chunk sent before ``[DONE]`` when ``stream_options.include_usage`` is set."""
    return {
        **_envelope("text_completion", id, created, model),
        "choices": [],
        "usage": usage_object(usage),
    }


def _text_choice(text: str, finish_reason: str | None) -> JsonObject:
    return {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}


def _optional_finish_reason(finish_reason: FinishReason | None) -> str | None:
    return None if finish_reason is None else openai_finish_reason(finish_reason)


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
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return server_sent_events.event(payload)
