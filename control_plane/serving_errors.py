"""The errors of the serving path: a full or timed-out buffer, a pool without capacity, and
agents that failed, stalled, stopped or vanished while serving a request."""

from __future__ import annotations

import math

from control_plane.errors import INVALID_REQUEST, OVERLOADED, SERVER_ERROR, OpenAIError
from paddler.protocol import (
    CONTEXT_LENGTH_EXCEEDED,
    INVALID_GRAMMAR,
    INVALID_JSON_SCHEMA,
    INVALID_LOGIT_BIAS,
    INVALID_MESSAGES,
    INVALID_TOOLS,
    KV_CACHE_FULL,
)


def buffer_full(retry_after_seconds: float) -> OpenAIError:
    retry_after = max(1, math.ceil(retry_after_seconds))
    return OpenAIError(
        503,
        "The server is overloaded: too many requests are waiting for an agent. Please retry later.",
        type=OVERLOADED,
        code="buffer_full",
        headers={"Retry-After": str(retry_after)},
    )


def key_buffer_full(key: str, retry_after_seconds: float) -> OpenAIError:
    """The caller's own key has its most requests waiting; other keys still get in."""
    retry_after = max(1, math.ceil(retry_after_seconds))
    return OpenAIError(
        503,
        f"Too many requests of API key '{key}' are waiting for an agent (its 'max_buffered' "
        "bound). Please retry later.",
        type=OVERLOADED,
        code="key_buffer_full",
        headers={"Retry-After": str(retry_after)},
    )


def buffer_timeout(waited_seconds: float | None = None, hint: str = "") -> OpenAIError:
    waited = f" within {waited_seconds:g} seconds" if waited_seconds is not None else " in time"
    hint = f" {hint}" if hint else ""
    return OpenAIError(
        504,
        f"No agent became available to serve the request{waited}.{hint} Please retry later.",
        type=OVERLOADED,
        code="buffer_timeout",
    )


def capacity_unavailable(detail: str, retry_after_seconds: float | None = None) -> OpenAIError:
    """The pool has no agent and cannot start one (its launches keep failing)."""
    headers = (
        {"Retry-After": str(max(1, math.ceil(retry_after_seconds)))} if retry_after_seconds else {}
    )
    return OpenAIError(
        503,
        f"No capacity is available for this model: {detail}. Please retry later.",
        type=OVERLOADED,
        code="capacity_unavailable",
        headers=headers,
    )


def agent_lost(detail: str | None = None) -> OpenAIError:
    message = "The agent serving this request went away before it finished"
    return OpenAIError(
        502,
        f"{message}: {detail}." if detail else f"{message}.",
        type=SERVER_ERROR,
        code="agent_lost",
    )


def agent_shutdown(detail: str) -> OpenAIError:
    """The agent stopped before the answer was whole (shut down past its grace period)."""
    return OpenAIError(
        503,
        f"The request was cut short: {detail}. Please retry.",
        type=SERVER_ERROR,
        code="shutdown",
    )


def agent_timeout(detail: str) -> OpenAIError:
    """The agent sent nothing for the request within its deadline."""
    return OpenAIError(
        504,
        f"The agent serving this request stopped responding: {detail}.",
        type=SERVER_ERROR,
        code="agent_timeout",
    )


def job_crashed_agents(detail: str) -> OpenAIError:
    """Agents kept vanishing while reading this request's prompt: it is likely the cause."""
    return OpenAIError(400, f"The request was refused: {detail}.", code="job_crashed_agents")


# Agent error codes that are the client's fault, and the request parameter each one is about.
_CLIENT_ERROR_PARAMS: dict[str, str | None] = {
    CONTEXT_LENGTH_EXCEEDED: None,
    INVALID_MESSAGES: "messages",
    INVALID_GRAMMAR: "grammar",
    INVALID_JSON_SCHEMA: "response_format",
    INVALID_LOGIT_BIAS: "logit_bias",
    INVALID_TOOLS: "tools",
}


def agent_error(code: str, message: str) -> OpenAIError:
    """An error an agent reported for a job.

    Codes that blame the request (a prompt that does not fit, messages the chat template
    refuses, a schema of ``response_format`` or of a tool that makes no grammar, an unknown
    token in ``logit_bias``) answer 400; a context that filled up under load answers 503
    (retrying later can succeed); anything else is the server's fault and answers 502.
    """
    if code in _CLIENT_ERROR_PARAMS:
        return OpenAIError(
            400, message, type=INVALID_REQUEST, param=_CLIENT_ERROR_PARAMS[code], code=code
        )
    if code == KV_CACHE_FULL:
        return OpenAIError(503, message, type=SERVER_ERROR, code=code)
    return OpenAIError(
        502, f"The agent failed to serve the request: {message}", type=SERVER_ERROR, code=code
    )
