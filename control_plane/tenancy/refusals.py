"""What a client is told about its key's limits: OpenAI's rate-limit headers, and the errors
a request refused by admission is answered with.

OpenAI's headers, which clients and their SDKs read::

    x-ratelimit-limit-requests: 60        x-ratelimit-limit-tokens: 150000
    x-ratelimit-remaining-requests: 59    x-ratelimit-remaining-tokens: 149984
    x-ratelimit-reset-requests: 1s        x-ratelimit-reset-tokens: 6m0s

A reset is how long until the key's window is empty again (see rate_windows.py), written as
OpenAI (and Go's time.Duration) writes durations. A 429 also says ``Retry-After`` in whole
seconds: how long until the request would be let in.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Literal

from control_plane.errors import INVALID_REQUEST, OpenAIError
from control_plane.tenancy.rate_windows import Window

LimitKind = Literal["requests", "tokens"]
Period = Literal["daily", "monthly"]

RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
INSUFFICIENT_QUOTA = "insufficient_quota"

_PER_MINUTE = {"requests": "requests per min (RPM)", "tokens": "tokens per min (TPM)"}


def format_duration(seconds: float) -> str:
    """``seconds`` as OpenAI writes a reset: "20ms", "1s", "1.5s", "6m0s", "1h2m3s"."""
    milliseconds = max(0, math.ceil(seconds * 1000 - 1e-6))
    if milliseconds == 0:
        return "0s"
    if milliseconds < 1000:
        return f"{milliseconds}ms"
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    text = f"{whole}.{fraction:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds - 1e-6)))


def limit_headers(kind: LimitKind, limit: int, window: Window) -> dict[str, str]:
    """The three ``x-ratelimit-*`` headers of one limit of a key."""
    return {
        f"x-ratelimit-limit-{kind}": str(limit),
        f"x-ratelimit-remaining-{kind}": str(window.remaining(limit)),
        f"x-ratelimit-reset-{kind}": format_duration(window.seconds_until_reset()),
    }


def model_not_allowed(model: str) -> OpenAIError:
    """The key may not use ``model``: told as OpenAI tells it, without saying the model exists."""
    return OpenAIError(
        404,
        f"The model '{model}' does not exist or you do not have access to it.",
        type=INVALID_REQUEST,
        param="model",
        code="model_not_found",
    )


def rate_limited(
    kind: LimitKind,
    *,
    key: str,
    model: str,
    limit: int,
    used: float,
    requested: int,
    wait: float,
    headers: dict[str, str],
) -> OpenAIError:
    return OpenAIError(
        429,
        f"Rate limit reached for {model} on key '{key}' on {_PER_MINUTE[kind]}: Limit {limit}, "
        f"Used {math.ceil(used - 1e-6)}, Requested {requested}. "
        f"Please try again in {format_duration(wait)}.",
        type=kind,
        code=RATE_LIMIT_EXCEEDED,
        headers={**headers, "Retry-After": retry_after(wait)},
    )


def request_too_large(
    *, key: str, model: str, limit: int, requested: int, headers: dict[str, str]
) -> OpenAIError:
    """The request alone needs more tokens than the key may use in a minute. Waiting does not
    help, so there is no ``Retry-After``."""
    return OpenAIError(
        429,
        f"Request too large for {model} on key '{key}' on tokens per min (TPM): Limit {limit}, "
        f"Requested {requested}. The input or output tokens must be reduced in order to run "
        "successfully (max_tokens counts as output).",
        type="tokens",
        code=RATE_LIMIT_EXCEEDED,
        headers=headers,
    )


def too_many_concurrent(*, key: str, limit: int, headers: dict[str, str]) -> OpenAIError:
    return OpenAIError(
        429,
        f"Too many concurrent requests on key '{key}': Limit {limit}. "
        "Please try again when one of them has finished.",
        type="requests",
        code=RATE_LIMIT_EXCEEDED,
        headers={**headers, "Retry-After": retry_after(1)},
    )


def budget_spent(
    *, key: str, period: Period, budget: int, spent: int, now: datetime, renews_at: datetime
) -> OpenAIError:
    return OpenAIError(
        429,
        f"You exceeded the {period} token budget of key '{key}': Limit {budget}, "
        f"Used {spent}. It renews at {renews_at.strftime('%Y-%m-%dT%H:%M:%SZ')}.",
        type=INSUFFICIENT_QUOTA,
        code=INSUFFICIENT_QUOTA,
        headers={"Retry-After": retry_after((renews_at - now).total_seconds())},
    )
