"""Admission decisions for every limit of a key, and how settling a ticket corrects them.

One replica, no SQL: what the other replicas add comes through SQL and is tested in
test_tenancy_ledger.py.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from control_plane.errors import OpenAIError
from control_plane.serving.jobs import Sender
from control_plane.tenancy import ANONYMOUS, Caller, KeyDirectory, Tenancy
from tests.test_tenancy_support import Clock, caller, chat


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def tenancy(clock: Clock, registry: CollectorRegistry) -> Tenancy:
    return Tenancy(KeyDirectory("", None), None, registry, clock)


def refusal(
    tenancy: Tenancy, who: Caller, model: str = "smol", cost_chars: int = 40
) -> OpenAIError:
    with pytest.raises(OpenAIError) as refused:
        tenancy.admit(who, model, chat(cost_chars))
    return refused.value


def rejections(registry: CollectorRegistry, key: str, reason: str) -> float:
    value = registry.get_sample_value(
        "paddler_key_rejections_total", {"key": key, "reason": reason}
    )
    return value or 0.0


def test_bootstrap_keys_and_the_open_api_have_no_limits(tenancy: Tenancy) -> None:
    tickets = [tenancy.admit(ANONYMOUS, "smol", chat()) for _ in range(100)]
    assert all(ticket.headers == {} for ticket in tickets)
    assert tickets[0].sender == Sender()
    assert tickets[0].estimated_tokens == 20
    assert tenancy.in_flight(ANONYMOUS) == 100


def test_a_key_limited_to_some_models(tenancy: Tenancy, registry: CollectorRegistry) -> None:
    alice = caller(models=("smol", "embedder"))
    tenancy.admit(alice, "smol", chat())
    error = refusal(tenancy, alice, "big")
    assert (error.status, error.code, error.param) == (404, "model_not_found", "model")
    assert "does not exist or you do not have access to it" in error.message
    assert rejections(registry, "alice", "model") == 1
    assert tenancy.in_flight(alice) == 1  # the refused request took nothing


def test_requests_per_minute(tenancy: Tenancy, clock: Clock, registry: CollectorRegistry) -> None:
    alice = caller(requests_per_minute=3)
    remaining = [
        tenancy.admit(alice, "smol", chat()).headers["x-ratelimit-remaining-requests"]
        for _ in range(3)
    ]
    assert remaining == ["2", "1", "0"]

    error = refusal(tenancy, alice)
    assert (error.status, error.type, error.code) == (429, "requests", "rate_limit_exceeded")
    assert "requests per min (RPM): Limit 3, Used 3, Requested 1" in error.message
    # The three leave the sliding window in the next minute: the first of them by its 20th s.
    assert error.headers["Retry-After"] == "80"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.headers["x-ratelimit-reset-requests"] == "2m0s"
    assert rejections(registry, "alice", "requests") == 1

    clock.advance(79)
    assert refusal(tenancy, alice).headers["Retry-After"] == "1"
    clock.advance(1)
    assert tenancy.admit(alice, "smol", chat()).headers["x-ratelimit-remaining-requests"] == "0"


def test_success_carries_the_rate_limit_headers(tenancy: Tenancy, clock: Clock) -> None:
    alice = caller(requests_per_minute=60, tokens_per_minute=1000)
    clock.advance(15)
    ticket = tenancy.admit(alice, "smol", chat(40, max_tokens=10))
    assert ticket.headers == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1m45s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "980",
        "x-ratelimit-reset-tokens": "1m45s",
    }


def test_tokens_per_minute_charge_the_estimate(tenancy: Tenancy, clock: Clock) -> None:
    alice = caller(tokens_per_minute=50)
    tenancy.admit(alice, "smol", chat())  # 10 prompt + 10 answer
    tenancy.admit(alice, "smol", chat())
    error = refusal(tenancy, alice)
    assert (error.status, error.type, error.code) == (429, "tokens", "rate_limit_exceeded")
    assert "tokens per min (TPM): Limit 50, Used 40, Requested 20" in error.message
    assert error.headers["x-ratelimit-remaining-tokens"] == "10"
    assert int(error.headers["Retry-After"]) >= 1


def test_settle_puts_the_real_tokens_in_the_estimates_place(tenancy: Tenancy) -> None:
    alice = caller(tokens_per_minute=50)
    first = tenancy.admit(alice, "smol", chat())
    tenancy.admit(alice, "smol", chat())
    refusal(tenancy, alice)

    first.settle(3, 2)  # used 5 of the 20 charged
    third = tenancy.admit(alice, "smol", chat())
    assert third.headers["x-ratelimit-remaining-tokens"] == "5"

    third.settle(30, 10)  # used more than estimated
    error = refusal(tenancy, alice, cost_chars=4)
    assert "Used 65" in error.message


def test_a_request_larger_than_the_token_limit_never_fits(tenancy: Tenancy) -> None:
    error = refusal(tenancy, caller(tokens_per_minute=10))
    assert (error.status, error.type, error.code) == (429, "tokens", "rate_limit_exceeded")
    assert error.message.startswith("Request too large for smol on key 'alice'")
    assert "Retry-After" not in error.headers


def test_max_concurrent(tenancy: Tenancy, registry: CollectorRegistry) -> None:
    alice = caller(max_concurrent=2)
    first = tenancy.admit(alice, "smol", chat())
    tenancy.admit(alice, "smol", chat())
    error = refusal(tenancy, alice)
    assert (error.status, error.code) == (429, "rate_limit_exceeded")
    assert "Too many concurrent requests on key 'alice': Limit 2" in error.message
    assert error.headers["Retry-After"] == "1"
    assert rejections(registry, "alice", "concurrency") == 1

    first.settle(1, 1)
    tenancy.admit(alice, "smol", chat())
    assert tenancy.in_flight(alice) == 2


def test_another_keys_use_counts_nothing(tenancy: Tenancy) -> None:
    alice, bob = caller(1, "alice", requests_per_minute=1), caller(2, "bob", requests_per_minute=1)
    tenancy.admit(alice, "smol", chat())
    tenancy.admit(bob, "smol", chat())
    refusal(tenancy, alice)


def test_daily_budget(tenancy: Tenancy, clock: Clock, registry: CollectorRegistry) -> None:
    alice = caller(daily_token_budget=100)
    tenancy.admit(alice, "smol", chat()).settle(60, 30)
    second = tenancy.admit(alice, "smol", chat())  # 90 used: not spent yet
    error = refusal(tenancy, alice)  # 90 used and 20 in flight
    assert (error.status, error.type, error.code) == (
        429,
        "insufficient_quota",
        "insufficient_quota",
    )
    assert "daily token budget of key 'alice': Limit 100, Used 110" in error.message
    assert error.headers["Retry-After"] == str(12 * 3600)  # until midnight UTC
    assert rejections(registry, "alice", "daily_budget") == 1

    second.settle(5, 0)  # 95 used
    tenancy.admit(alice, "smol", chat()).settle(10, 0)
    refusal(tenancy, alice)
    clock.advance(12 * 3600)  # a new day
    tenancy.admit(alice, "smol", chat())


def test_monthly_budget(tenancy: Tenancy, clock: Clock) -> None:
    alice = caller(monthly_token_budget=100, daily_token_budget=80)
    tenancy.admit(alice, "smol", chat()).settle(70, 0)
    clock.advance(24 * 3600)  # the day's budget is back, not the month's
    tenancy.admit(alice, "smol", chat()).settle(30, 0)
    error = refusal(tenancy, alice)
    assert "monthly token budget of key 'alice': Limit 100, Used 100" in error.message
    assert "It renews at 2025-02-01T00:00:00Z." in error.message
    clock.advance(17 * 24 * 3600)  # February
    tenancy.admit(alice, "smol", chat())


def test_limits_are_checked_in_order(tenancy: Tenancy) -> None:
    alice = caller(models=("smol",), daily_token_budget=10, requests_per_minute=1)
    assert refusal(tenancy, alice, "big").status == 404
    tenancy.admit(alice, "smol", chat()).settle(10, 0)
    assert refusal(tenancy, alice).type == "insufficient_quota"


def test_settle_is_idempotent(tenancy: Tenancy, registry: CollectorRegistry) -> None:
    alice = caller(max_concurrent=5, tokens_per_minute=1000)
    ticket = tenancy.admit(alice, "smol", chat())
    other = tenancy.admit(alice, "smol", chat())
    ticket.settle(4, 6)
    ticket.settle(4, 6)
    ticket.settle(100, 100, outcome="error")
    assert ticket.settled and not other.settled
    assert tenancy.in_flight(alice) == 1
    labels = {"key": "alice", "model": "smol", "outcome": "ok"}
    assert registry.get_sample_value("paddler_key_requests_total", labels) == 1
    assert (
        registry.get_sample_value("paddler_key_requests_total", labels | {"outcome": "error"})
        is None
    )
    tokens = {"key": "alice", "kind": "completion"}
    assert registry.get_sample_value("paddler_key_tokens_total", tokens) == 6
    assert tenancy.admit(alice, "smol", chat(4)).headers["x-ratelimit-remaining-tokens"] == "959"


def test_ticket_sender_carries_priority_and_buffer_bound(tenancy: Tenancy) -> None:
    ticket = tenancy.admit(caller(priority="high", max_buffered=7), "smol", chat())
    assert ticket.sender == Sender(key="alice", priority=0, weight=1.0, max_buffered=7)
    assert tenancy.admit(caller(priority="low"), "smol", chat()).sender.priority == 2
    assert tenancy.admit(caller(), "smol", chat()).sender.priority == 1


def test_bootstrap_usage_is_counted_under_its_own_label(
    tenancy: Tenancy, registry: CollectorRegistry
) -> None:
    bootstrap = Caller(key=None, owner="ab" * 32)
    tenancy.admit(bootstrap, "smol", chat()).settle(3, 4, outcome="withdrawn")
    labels = {"key": "(bootstrap)", "model": "smol", "outcome": "withdrawn"}
    assert registry.get_sample_value("paddler_key_requests_total", labels) == 1


def test_key_labels_are_bounded(clock: Clock) -> None:
    registry = CollectorRegistry()
    tenancy = Tenancy(KeyDirectory("", None), None, registry, clock)
    for key_id in range(1, 103):
        tenancy.admit(caller(key_id, f"key{key_id}"), "smol", chat()).settle(1, 0)
    keys = {
        sample.labels["key"]
        for metric in registry.collect()
        if metric.name == "paddler_key_requests"
        for sample in metric.samples
    }
    assert len(keys) == 101 and "other" in keys and "key100" in keys and "key101" not in keys


def test_a_refused_request_leaves_no_trace_in_the_windows(tenancy: Tenancy) -> None:
    alice = caller(requests_per_minute=2, max_concurrent=1)
    tenancy.admit(alice, "smol", chat())
    refusal(tenancy, alice)  # concurrency
    refusal(tenancy, alice)
    error = refusal(tenancy, alice)
    assert error.headers["x-ratelimit-remaining-requests"] == "1"
