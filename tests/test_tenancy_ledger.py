"""Usage and rate counts through real SQL (SQLite): what the flush writes, what other
replicas see, and that a failed flush loses nothing."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.key_store import KeyStore
from control_plane.db.usage_store import UsageDelta, UsageRow, UsageStore
from control_plane.errors import OpenAIError
from control_plane.tenancy import ANONYMOUS, Caller, KeyDirectory, Tenancy
from control_plane.tenancy.usage_ledger import UsageLedger
from tests.test_tenancy_support import START, Clock, caller, chat

HOUR = START.replace(minute=0)


@pytest.fixture
def usage(engine: AsyncEngine, clock: Clock) -> UsageStore:
    return UsageStore(engine, clock=clock)


def replica(engine: AsyncEngine, usage: UsageStore, clock: Clock, name: str) -> Tenancy:
    directory = KeyDirectory("", KeyStore(engine, clock=clock), clock=clock)
    return Tenancy(directory, usage, CollectorRegistry(), clock, replica=name)


def refused(tenancy: Tenancy, who: Caller) -> OpenAIError:
    with pytest.raises(OpenAIError) as refusal:
        tenancy.admit(who, "smol", chat())
    return refusal.value


async def test_flush_writes_the_settled_usage(
    engine: AsyncEngine, usage: UsageStore, clock: Clock
) -> None:
    tenancy = replica(engine, usage, clock, "a")
    alice, bob = caller(1, "alice", tokens_per_minute=10_000), caller(2, "bob")
    tenancy.admit(alice, "smol", chat()).settle(10, 5, queue_seconds=0.5)
    tenancy.admit(alice, "smol", chat()).settle(20, 0, outcome="error", queue_seconds=1.5)
    tenancy.admit(alice, "embedder", chat()).settle(7, 0)
    tenancy.admit(bob, "smol", chat()).settle(1, 2, outcome="withdrawn")
    tenancy.admit(ANONYMOUS, "smol", chat()).settle(3, 4, outcome="rejected")
    clock.advance(3600)  # the next hour
    tenancy.admit(alice, "smol", chat()).settle(100, 50)
    unsettled = tenancy.admit(alice, "smol", chat())

    await tenancy.sync()

    next_hour = HOUR + timedelta(hours=1)
    assert await usage.rows() == [
        UsageRow(0, "smol", HOUR, 1, 3, 4, 1, 0.0),
        UsageRow(1, "embedder", HOUR, 1, 7, 0, 0, 0.0),
        UsageRow(1, "smol", HOUR, 2, 30, 5, 1, 2.0),
        UsageRow(2, "smol", HOUR, 1, 1, 2, 0, 0.0),
        UsageRow(1, "smol", next_hour, 1, 100, 50, 0, 0.0),
    ]
    unsettled.settle(1, 1)
    await tenancy.sync()
    await tenancy.sync()  # nothing new: nothing added twice
    assert (await usage.rows(since=next_hour))[0] == UsageRow(
        1, "smol", next_hour, 2, 101, 51, 0, 0.0
    )


async def test_a_failed_flush_loses_nothing(
    engine: AsyncEngine, usage: UsageStore, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "paddler.tenancy")
    tenancy = replica(engine, usage, clock, "a")
    alice = caller(1, "alice", requests_per_minute=100)
    tenancy.admit(alice, "smol", chat()).settle(10, 5)
    async with engine.begin() as connection:
        await connection.execute(text("ALTER TABLE key_usage RENAME TO key_usage_away"))
        await connection.execute(text("ALTER TABLE rate_windows RENAME TO rate_windows_away"))

    await tenancy.sync()  # fails, and says so once
    tenancy.admit(alice, "smol", chat()).settle(1, 1)
    await tenancy.sync()
    assert [record.message for record in caplog.records].count(
        "tenancy usage flush failed; retrying every sync"
    ) == 1

    async with engine.begin() as connection:
        await connection.execute(text("ALTER TABLE key_usage_away RENAME TO key_usage"))
        await connection.execute(text("ALTER TABLE rate_windows_away RENAME TO rate_windows"))
    await tenancy.sync()
    assert await usage.rows() == [UsageRow(1, "smol", HOUR, 2, 11, 6, 0, 0.0)]
    minute = int(START.timestamp() // 60)
    assert await usage.others_rate_counts("b", minute) == {(1, minute): (2, 17)}
    assert "tenancy usage flush works again" in caplog.text


async def test_rate_limits_count_the_other_replicas(
    engine: AsyncEngine, usage: UsageStore, clock: Clock
) -> None:
    a, b = replica(engine, usage, clock, "a"), replica(engine, usage, clock, "b")
    alice = caller(1, "alice", requests_per_minute=4, tokens_per_minute=1000)
    for _ in range(3):
        a.admit(alice, "smol", chat()).settle(100, 100)  # 200 tokens each, not 20
    await a.sync()
    await b.sync()

    ticket = b.admit(alice, "smol", chat())
    assert ticket.headers["x-ratelimit-remaining-requests"] == "0"
    assert ticket.headers["x-ratelimit-remaining-tokens"] == str(1000 - 600 - 20)
    assert refused(b, alice).type == "requests"
    await b.sync()
    await a.sync()
    assert refused(a, alice).type == "requests"


async def test_budgets_count_the_other_replicas(
    engine: AsyncEngine, usage: UsageStore, clock: Clock
) -> None:
    keys = KeyStore(engine, clock=clock)
    await keys.create("alice", prefix="sk-pfp-abcde", digest="ab" * 32, fields={})
    record = await keys.update("alice", {"daily_token_budget": 1000})
    assert record is not None
    alice = Caller(key=record, owner=record.digest)
    a, b = replica(engine, usage, clock, "a"), replica(engine, usage, clock, "b")
    await a.sync()
    await b.sync()

    a.admit(alice, "smol", chat()).settle(600, 0)
    b.admit(alice, "smol", chat()).settle(380, 0)
    b.admit(alice, "smol", chat())  # 380 used as far as b knows, 20 in flight: let in
    await a.sync()
    await b.sync()
    error = refused(b, alice)  # 600 + 380 (its own, read back from SQL now) + 20 in flight
    assert "Limit 1000, Used 1000" in error.message
    await a.sync()  # a reads what b wrote
    a.admit(alice, "smol", chat())  # 980: a knows of no request in flight on b
    assert refused(a, alice).type == "insufficient_quota"


async def test_the_month_counts_earlier_days_and_today_counts_only_today(
    usage: UsageStore, clock: Clock
) -> None:
    ledger = UsageLedger(usage, "a")
    yesterday = START - timedelta(days=1)
    last_month = START - timedelta(days=31)
    await usage.add(
        [
            UsageDelta(1, "smol", last_month, requests=1, prompt_tokens=1000),
            UsageDelta(1, "smol", yesterday, requests=1, prompt_tokens=100, completion_tokens=20),
            UsageDelta(1, "smol", START, requests=1, prompt_tokens=5, completion_tokens=3),
        ]
    )
    ledger.record(
        1, "smol", START, prompt_tokens=40, completion_tokens=0, error=False, queue_seconds=0
    )
    today, month = START.replace(hour=0, minute=0), START.replace(day=1, hour=0, minute=0)
    assert ledger.tokens_since(1, today) == 40  # nothing read yet: this replica's own

    await ledger.flush(START, read_budgets=True)
    assert ledger.tokens_since(1, today) == 48
    assert ledger.tokens_since(1, month) == 168
    ledger.record(
        1, "smol", START, prompt_tokens=2, completion_tokens=0, error=False, queue_seconds=0
    )
    assert ledger.tokens_since(1, today) == 50

    await usage.add([UsageDelta(1, "smol", START, prompt_tokens=7)])  # another replica's
    await ledger.flush(START + timedelta(seconds=1), read_budgets=True)
    assert ledger.tokens_since(1, today) == 57
    assert ledger.tokens_since(1, month) == 177
    assert ledger.tokens_since(2, month) == 0
