"""Stored responses in SQL, on SQLite and PostgreSQL: the 0003 migration, owners, expiry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from control_plane.db.engine import create_engine
from control_plane.db.migrate import current, downgrade, head, upgrade
from control_plane.db.response_store import ResponseStore
from tests.sql_databases import run_sync
from tests.test_migrations import schema_differences, table_names

DAY = 24 * 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 6, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(database_url: str, clock: Clock) -> AsyncIterator[ResponseStore]:
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    yield ResponseStore(engine, retention=DAY, clock=clock)
    await engine.dispose()


def test_the_migration_adds_and_removes_the_responses_table(database_url: str) -> None:
    upgrade(database_url)
    assert current(database_url) == head() and "responses" in table_names(database_url)
    assert run_sync(database_url, schema_differences) == []
    indexes = run_sync(database_url, lambda connected: inspect(connected).get_indexes("responses"))
    assert [(index["name"], index["column_names"]) for index in indexes] == [
        ("ix_responses_expires_at", ["expires_at"])
    ]
    downgrade(database_url, "0002")
    assert current(database_url) == "0002" and "responses" not in table_names(database_url)


async def save(store: ResponseStore, id: str, owner: str = "alice") -> None:
    await store.save(
        id,
        owner,
        conversation=[{"role": "user", "content": "héllo"}],
        input_items=[{"type": "message", "id": "msg_1"}],
        body={"id": id, "object": "response", "output": []},
    )


async def test_a_saved_response_is_read_back_by_its_owner_only(
    store: ResponseStore, clock: Clock
) -> None:
    await save(store, "resp_a")
    record = await store.get("resp_a", "alice")
    assert record is not None
    assert record.conversation == [{"role": "user", "content": "héllo"}]
    assert record.body["id"] == "resp_a" and record.input_items[0]["id"] == "msg_1"
    assert record.created_at == clock.now and record.expires_at == clock.now + timedelta(days=1)
    assert await store.get("resp_a", "mallory") is None
    assert not await store.delete("resp_a", "mallory")
    assert await store.get("resp_a", "alice") is not None


async def test_delete_removes_it(store: ResponseStore) -> None:
    await save(store, "resp_b")
    assert await store.delete("resp_b", "alice")
    assert await store.get("resp_b", "alice") is None
    assert not await store.delete("resp_b", "alice")


async def test_an_expired_response_is_not_served_and_is_swept(
    store: ResponseStore, clock: Clock
) -> None:
    await save(store, "resp_old")
    clock.now += timedelta(days=1)
    assert await store.get("resp_old", "alice") is None
    assert not await store.delete("resp_old", "alice")
    assert await store.sweep() == 1
    assert await store.sweep() == 0


async def test_a_save_sweeps_what_has_expired(store: ResponseStore, clock: Clock) -> None:
    await save(store, "resp_old")
    clock.now += timedelta(days=2)
    await save(store, "resp_new")
    assert await store.sweep() == 0  # the old one went with the new one's write
    assert await store.get("resp_new", "alice") is not None
