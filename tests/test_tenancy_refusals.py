"""What a client is told about its key's limits: headers and OpenAI-shaped errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from control_plane.tenancy import refusals
from control_plane.tenancy.rate_windows import Window


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.02, "20ms"),
        (0.0201, "21ms"),  # rounded up: never sooner than the truth
        (0.999, "999ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (7.66, "7.66s"),
        (59.9004, "59.901s"),
        (59.9994, "1m0s"),
        (60.0, "1m0s"),
        (360.0, "6m0s"),
        (86.4, "1m26.4s"),
        (3600.0, "1h0m0s"),
        (3723.0, "1h2m3s"),
        (-3.0, "0s"),
    ],
)
def test_durations_are_written_as_openai_writes_them(seconds: float, text: str) -> None:
    assert refusals.format_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.0, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2"), (80.0, "80")]
)
def test_retry_after_is_whole_seconds_at_least_one(seconds: float, header: str) -> None:
    assert refusals.retry_after(seconds) == header


def test_limit_headers() -> None:
    window = Window(previous=0, current=1, elapsed=0.0)
    assert refusals.limit_headers("requests", 3, window) == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "2",
        "x-ratelimit-reset-requests": "2m0s",
    }
    assert refusals.limit_headers("tokens", 100, Window(0, 0, 5.0)) == {
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "100",
        "x-ratelimit-reset-tokens": "0s",
    }


def test_rate_limited_error() -> None:
    error = refusals.rate_limited(
        "requests",
        key="alice",
        model="smol",
        limit=3,
        used=3.0,
        requested=1,
        wait=20.0,
        headers={"x-ratelimit-limit-requests": "3"},
    )
    assert error.status == 429
    assert error.body() == {
        "error": {
            "message": "Rate limit reached for smol on key 'alice' on requests per min (RPM): "
            "Limit 3, Used 3, Requested 1. Please try again in 20s.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    assert error.headers == {"x-ratelimit-limit-requests": "3", "Retry-After": "20"}


def test_request_too_large_has_no_retry_after() -> None:
    error = refusals.request_too_large(
        key="alice", model="smol", limit=10, requested=20, headers={}
    )
    assert (error.status, error.type, error.code) == (429, "tokens", "rate_limit_exceeded")
    assert "Limit 10, Requested 20" in error.message
    assert "Retry-After" not in error.headers


def test_budget_error_says_when_it_renews() -> None:
    error = refusals.budget_spent(
        key="alice",
        period="daily",
        budget=1000,
        spent=1200,
        now=datetime(2025, 1, 15, 23, 59, 30, tzinfo=UTC),
        renews_at=datetime(2025, 1, 16, tzinfo=UTC),
    )
    assert (error.status, error.type, error.code) == (
        429,
        "insufficient_quota",
        "insufficient_quota",
    )
    assert error.message == (
        "You exceeded the daily token budget of key 'alice': Limit 1000, Used 1200. "
        "It renews at 2025-01-16T00:00:00Z."
    )
    assert error.headers == {"Retry-After": "30"}


def test_model_not_allowed_reads_like_openai() -> None:
    error = refusals.model_not_allowed("big")
    assert error.status == 404
    assert error.body()["error"] == {
        "message": "The model 'big' does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


def test_too_many_concurrent() -> None:
    error = refusals.too_many_concurrent(key="alice", limit=2, headers={})
    assert (error.status, error.code) == (429, "rate_limit_exceeded")
    assert error.headers == {"Retry-After": "1"}
