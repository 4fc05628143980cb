"""API keys in SQL, on SQLite and PostgreSQL: the 0004 migration, names, revocation, polling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import IntegrityError

from control_plane.db.engine import create_engine
from control_plane.db.key_store import KEY_FIELDS, KeyNameTaken, KeyRecord, KeyStore
from control_plane.db.migrate import current, downgrade, upgrade
from tests.sql_databases import run_sync
from tests.test_migrations import schema_differences, table_names

START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
KEY_TABLES = {"api_keys", "key_usage", "rate_windows"}


class Clock:
    """A clock that moves one second forward every time it is read."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def keys(database_url: str, clock: Clock) -> AsyncIterator[KeyStore]:
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    yield KeyStore(engine, clock=clock)
    await engine.dispose()


async def create(keys: KeyStore, name: str, **fields: object) -> KeyRecord:
    return await keys.create(name, prefix=f"sk-pfp-{name}"[:12], digest=name * 4, fields=fields)


def test_the_migration_adds_and_removes_the_key_tables(database_url: str) -> None:
    upgrade(database_url, "0004")
    assert table_names(database_url) >= KEY_TABLES
    assert run_sync(database_url, schema_differences) == []
    downgrade(database_url, "0003")
    assert current(database_url) == "0003"
    assert not KEY_TABLES & table_names(database_url)


async def test_a_new_key_has_the_defaults_and_reads_back(keys: KeyStore, clock: Clock) -> None:
    key = await create(keys, "alice")

    assert key.id > 0
    assert (key.name, key.prefix, key.digest) == ("alice", "sk-pfp-alice", "alicealicealicealice")
    assert key.team == "" and key.models is None and key.priority == "normal"
    assert key.requests_per_minute is None and key.monthly_token_budget is None
    assert not key.disabled and key.revoked_at is None and key.expires_at is None
    assert key.created_at == key.updated_at == clock.now
    assert await keys.get("alice") == key
    assert await keys.get("bob") is None


async def test_every_field_is_kept(keys: KeyStore) -> None:
    expires = datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    fields = {
        "team": "search",
        "models": ["smol", "tiny"],
        "requests_per_minute": 60,
        "tokens_per_minute": 10_000,
        "max_concurrent": 4,
        "max_buffered": 16,
        "daily_token_budget": 100_000,
        "monthly_token_budget": 2_000_000,
        "priority": "high",
        "expires_at": expires,
        "disabled": True,
    }
    assert set(fields) == KEY_FIELDS
    await create(keys, "alice", **fields)

    key = await keys.get("alice")
    assert key is not None
    assert key.models == ("smol", "tiny")
    assert key.expires_at == expires and key.expires_at.tzinfo == UTC
    assert (key.team, key.priority, key.disabled) == ("search", "high", True)
    assert (key.requests_per_minute, key.tokens_per_minute) == (60, 10_000)
    assert (key.max_concurrent, key.max_buffered) == (4, 16)
    assert (key.daily_token_budget, key.monthly_token_budget) == (100_000, 2_000_000)


async def test_an_empty_model_list_is_not_every_model(keys: KeyStore) -> None:
    await create(keys, "alice", models=[])
    key = await keys.get("alice")
    assert key is not None and key.models == ()


async def test_a_name_is_taken_once(keys: KeyStore) -> None:
    first = await create(keys, "alice")

    with pytest.raises(KeyNameTaken) as taken:
        await keys.create("alice", prefix="sk-pfp-other", digest="other", fields={})

    assert taken.value.name == "alice"
    assert await keys.list() == [first]


async def test_a_taken_digest_is_not_reported_as_a_taken_name(keys: KeyStore) -> None:
    await keys.create("alice", prefix="sk-pfp-x", digest="same", fields={})
    with pytest.raises(IntegrityError):
        await keys.create("bob", prefix="sk-pfp-x", digest="same", fields={})


async def test_unknown_fields_are_refused(keys: KeyStore) -> None:
    with pytest.raises(ValueError, match="digest"):
        await create(keys, "alice", digest="x")
    await create(keys, "bob")
    with pytest.raises(ValueError, match="name"):
        await keys.update("bob", {"name": "carol"})
    assert await keys.count() == 1


async def test_keys_are_listed_by_name(keys: KeyStore) -> None:
    for name in ("carol", "alice", "bob"):
        await create(keys, name)
    assert [key.name for key in await keys.list()] == ["alice", "bob", "carol"]
    assert await keys.count() == 3


async def test_update_changes_fields_and_bumps_updated_at(keys: KeyStore, clock: Clock) -> None:
    created = await create(keys, "alice", requests_per_minute=10, models=["smol"])

    updated = await keys.update("alice", {"requests_per_minute": None, "models": None})

    assert updated is not None
    assert updated.requests_per_minute is None and updated.models is None
    assert updated.created_at == created.created_at
    assert updated.updated_at == clock.now > created.updated_at
    assert await keys.get("alice") == updated
    assert await keys.update("nobody", {"team": "x"}) is None


async def test_revoke_disables_for_good_and_bumps_updated_at(keys: KeyStore, clock: Clock) -> None:
    created = await create(keys, "alice")

    revoked = await keys.revoke("alice")

    assert revoked is not None
    assert revoked.disabled and revoked.revoked_at == revoked.updated_at == clock.now
    assert revoked.updated_at > created.updated_at
    assert not revoked.usable(clock.now)
    assert await keys.get("alice") == revoked
    assert await keys.revoke("alice") == revoked  # again: unchanged
    assert await keys.revoke("nobody") is None


async def test_usable_until_it_expires_unless_disabled(keys: KeyStore) -> None:
    expires = START + timedelta(days=1)
    key = await create(keys, "alice", expires_at=expires)
    forever = await create(keys, "bob")
    disabled = await create(keys, "carol", disabled=True)

    assert key.usable(expires - timedelta(microseconds=1))
    assert not key.usable(expires)
    assert forever.usable(expires + timedelta(days=3650))
    assert not disabled.usable(START)


async def test_changed_since_polls_incrementally_oldest_first(keys: KeyStore) -> None:
    for name in ("carol", "alice", "bob"):
        await create(keys, name)

    everything = await keys.changed_since(None)
    assert [key.name for key in everything] == ["carol", "alice", "bob"]
    last_seen = everything[-1].updated_at
    assert await keys.changed_since(last_seen) == []

    await keys.update("carol", {"team": "ops"})
    await keys.revoke("alice")
    await create(keys, "dave")

    changed = await keys.changed_since(last_seen)
    assert [key.name for key in changed] == ["carol", "alice", "dave"]
    assert changed[0].team == "ops" and changed[1].revoked_at is not None
    assert await keys.changed_since(changed[-1].updated_at) == []
    assert [key.name for key in await keys.changed_since(changed[0].updated_at)] == [
        "alice",
        "dave",
    ]


@pytest.mark.timeout(60)
async def test_ten_thousand_keys_are_created_at_once(keys: KeyStore, clock: Clock) -> None:
    rows = [
        (f"key-{n:05}", f"sk-pfp-{n:05}", f"{n:064x}", {"requests_per_minute": n % 7 or None})
        for n in range(10_000)
    ]

    await keys.bulk_create(rows)

    assert await keys.count() == 10_000
    key = await keys.get("key-00013")
    assert key is not None
    assert (key.digest, key.requests_per_minute, key.priority) == (f"{13:064x}", 6, "normal")
    assert key.created_at == key.updated_at == clock.now
    assert len(await keys.changed_since(None)) == 10_000
    await keys.bulk_create([])


async def test_bulk_create_is_all_or_nothing(keys: KeyStore) -> None:
    await create(keys, "alice")

    with pytest.raises(KeyNameTaken) as taken:
        await keys.bulk_create([("bob", "p", "d1", {}), ("alice", "p", "d2", {})])
    assert taken.value.name == "alice"
    with pytest.raises(KeyNameTaken) as twice:
        await keys.bulk_create([("carol", "p", "d3", {}), ("carol", "p", "d4", {})])
    assert twice.value.name == "carol"

    assert [key.name for key in await keys.list()] == ["alice"]
