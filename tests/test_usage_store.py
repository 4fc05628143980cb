"""Usage counters in SQL, on SQLite and PostgreSQL: additive writes from replicas at once,
reports, budgets' token sums and the shared per-minute rate windows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from control_plane.db.engine import create_engine
from control_plane.db.migrate import upgrade
from control_plane.db.usage_store import UsageDelta, UsageRow, UsageStore

HOUR = datetime(2025, 3, 1, 9, tzinfo=UTC)
NEXT_HOUR = HOUR + timedelta(hours=1)


@pytest.fixture
async def migrated(database_url: str) -> str:
    await asyncio.to_thread(upgrade, database_url)
    return database_url


@pytest.fixture
async def usage(migrated: str) -> AsyncIterator[UsageStore]:
    engine = create_engine(migrated)
    yield UsageStore(engine)
    await engine.dispose()


async def test_deltas_add_up_in_their_hour(usage: UsageStore) -> None:
    await usage.add(
        [
            UsageDelta(7, "smol", HOUR, requests=1, prompt_tokens=10, completion_tokens=5),
            UsageDelta(7, "smol", HOUR + timedelta(minutes=59), requests=1, errors=1),
        ]
    )
    await usage.add(
        [UsageDelta(7, "smol", HOUR + timedelta(minutes=3), requests=2, queue_seconds=0.25)]
    )
    await usage.add([])

    assert await usage.rows() == [
        UsageRow(
            7,
            "smol",
            HOUR,
            requests=4,
            prompt_tokens=10,
            completion_tokens=5,
            errors=1,
            queue_seconds=0.25,
        )
    ]
    (row,) = await usage.rows()
    assert row.hour.tzinfo == UTC


async def test_rows_filter_and_come_by_hour_then_key_then_model(usage: UsageStore) -> None:
    await usage.add(
        [
            UsageDelta(2, "tiny", NEXT_HOUR, requests=1),
            UsageDelta(2, "smol", NEXT_HOUR, requests=1),
            UsageDelta(0, "smol", NEXT_HOUR, requests=1),
            UsageDelta(2, "smol", HOUR, requests=1),
            UsageDelta(3, "smol", HOUR + timedelta(hours=2), requests=1),
        ]
    )

    def shape(rows: list[UsageRow]) -> list[tuple[int, str, int]]:
        return [(row.key_id, row.model, row.hour.hour) for row in rows]

    assert shape(await usage.rows()) == [
        (2, "smol", 9),
        (0, "smol", 10),
        (2, "smol", 10),
        (2, "tiny", 10),
        (3, "smol", 11),
    ]
    assert shape(await usage.rows(key_ids=[2], model="smol")) == [(2, "smol", 9), (2, "smol", 10)]
    assert shape(await usage.rows(key_ids={0, 3})) == [(0, "smol", 10), (3, "smol", 11)]
    assert shape(await usage.rows(since=NEXT_HOUR, until=NEXT_HOUR + timedelta(hours=1))) == [
        (0, "smol", 10),
        (2, "smol", 10),
        (2, "tiny", 10),
    ]
    assert await usage.rows(key_ids=[]) == []


async def test_tokens_since_sums_each_key_from_an_hour_on(usage: UsageStore) -> None:
    await usage.add(
        [
            UsageDelta(1, "smol", HOUR, prompt_tokens=100, completion_tokens=1),
            UsageDelta(1, "smol", NEXT_HOUR, prompt_tokens=10, completion_tokens=2),
            UsageDelta(1, "tiny", NEXT_HOUR, prompt_tokens=20, completion_tokens=3),
            UsageDelta(0, "smol", NEXT_HOUR, completion_tokens=4),
        ]
    )

    assert await usage.tokens_since(NEXT_HOUR) == {1: 35, 0: 4}
    assert await usage.tokens_since(HOUR) == {1: 136, 0: 4}
    assert await usage.tokens_since(NEXT_HOUR + timedelta(hours=1)) == {}


@pytest.mark.timeout(120)
async def test_two_replicas_adding_to_the_same_rows_lose_nothing(migrated: str) -> None:
    engines = [create_engine(migrated), create_engine(migrated)]
    replicas = [UsageStore(engine) for engine in engines]
    one = UsageDelta(1, "smol", HOUR, requests=1, prompt_tokens=3, queue_seconds=0.5)
    other = UsageDelta(1, "tiny", HOUR, requests=1, completion_tokens=2)

    async def write(store: UsageStore, batch: list[UsageDelta]) -> None:
        for _ in range(40):
            await store.add(batch)

    try:
        # The same two rows, written in opposite orders by the two replicas.
        await asyncio.gather(
            write(replicas[0], [one, other]),
            write(replicas[1], [other, one]),
            write(replicas[0], [one]),
        )
        assert await replicas[1].rows() == [
            UsageRow(
                1,
                "smol",
                HOUR,
                requests=120,
                prompt_tokens=360,
                completion_tokens=0,
                errors=0,
                queue_seconds=60.0,
            ),
            UsageRow(
                1,
                "tiny",
                HOUR,
                requests=80,
                prompt_tokens=0,
                completion_tokens=160,
                errors=0,
                queue_seconds=0.0,
            ),
        ]
    finally:
        for engine in engines:
            await engine.dispose()


async def test_rate_counts_add_per_replica_and_others_are_summed(usage: UsageStore) -> None:
    await usage.add_rate_counts("a", {(1, 100): (2, 50), (2, 100): (1, 10)})
    await usage.add_rate_counts("a", {(1, 100): (1, 5)})
    await usage.add_rate_counts("b", {(1, 100): (4, 40), (1, 101): (1, 1)})
    await usage.add_rate_counts("c", {(1, 101): (2, 2)})
    await usage.add_rate_counts("c", {})

    assert await usage.others_rate_counts("a", 100) == {(1, 100): (4, 40), (1, 101): (3, 3)}
    assert await usage.others_rate_counts("b", 100) == {
        (1, 100): (3, 55),
        (2, 100): (1, 10),
        (1, 101): (2, 2),
    }
    assert await usage.others_rate_counts("b", 101) == {(1, 101): (2, 2)}
    assert await usage.others_rate_counts("z", 102) == {}


async def test_old_rate_windows_of_every_replica_are_deleted(usage: UsageStore) -> None:
    await usage.add_rate_counts("a", {(1, 100): (1, 1), (1, 101): (1, 1)})
    await usage.add_rate_counts("b", {(1, 100): (1, 1), (2, 104): (1, 1)})

    await usage.add_rate_counts("c", {(1, 106): (1, 1)})

    assert await usage.others_rate_counts("z", 0) == {
        (1, 101): (1, 1),
        (2, 104): (1, 1),
        (1, 106): (1, 1),
    }
