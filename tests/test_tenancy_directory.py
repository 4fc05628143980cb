"""Authenticating requests against the keys in SQL (SQLite) and the bootstrap keys."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.key_store import KeyRecord, KeyStore
from control_plane.tenancy import ANONYMOUS, KeyDirectory, new_secret, secret_digest
from control_plane.tenancy.secrets import visible_prefix
from tests.test_tenancy_support import Clock


@pytest.fixture
def store(engine: AsyncEngine, clock: Clock) -> KeyStore:
    return KeyStore(engine, clock=clock)


async def create(store: KeyStore, name: str, **fields: Any) -> str:
    """A new key called ``name``; its secret."""
    secret = new_secret()
    await store.create(
        name, prefix=visible_prefix(secret), digest=secret_digest(secret), fields=fields
    )
    return secret


def bearer(secret: str) -> str:
    return f"Bearer {secret}"


async def test_open_without_bootstrap_keys_or_key_rows(store: KeyStore, clock: Clock) -> None:
    directory = KeyDirectory("", store, clock=clock)
    assert directory.authenticate("") is None  # SQL not read yet: nothing is let in
    await directory.refresh()
    assert directory.open
    assert directory.authenticate("") is ANONYMOUS
    assert directory.authenticate("Bearer whatever") is ANONYMOUS
    assert KeyDirectory("", None).authenticate("") is ANONYMOUS  # no store at all


async def test_bootstrap_keys(store: KeyStore, clock: Clock) -> None:
    directory = KeyDirectory("first, second", store, clock=clock)
    caller = directory.authenticate("Bearer second")  # accepted before SQL is read
    assert caller is not None and caller.key is None
    assert caller.owner == secret_digest("second")
    await directory.refresh()
    assert not directory.open
    assert directory.authenticate("Bearer third") is None
    assert directory.authenticate("") is None
    assert directory.authenticate("Basic Zmlyc3Q=") is None


async def test_a_key_row_closes_the_api_and_lets_its_secret_in(
    store: KeyStore, clock: Clock
) -> None:
    directory = KeyDirectory("", store, clock=clock)
    await directory.refresh()
    secret = await create(store, "alice", requests_per_minute=5)
    assert directory.authenticate("") is ANONYMOUS  # until the next refresh
    await directory.refresh()

    assert directory.authenticate("") is None
    assert directory.authenticate(bearer(new_secret())) is None
    caller = directory.authenticate(bearer(secret))
    assert caller is not None and caller.key is not None
    assert (caller.key.name, caller.key.requests_per_minute) == ("alice", 5)
    assert caller.owner == secret_digest(secret)
    assert caller.key_id == caller.key.id


async def test_revoke_is_seen_at_the_next_refresh(store: KeyStore, clock: Clock) -> None:
    directory = KeyDirectory("", store, clock=clock)
    secret = await create(store, "alice")
    await create(store, "bob")
    await directory.refresh()
    assert directory.authenticate(bearer(secret)) is not None

    clock.advance(1)
    await store.revoke("alice")
    assert directory.authenticate(bearer(secret)) is not None
    clock.advance(0.5)
    await directory.refresh()
    assert directory.authenticate(bearer(secret)) is None
    assert directory.key_count == 2


async def test_revoking_every_key_keeps_the_api_closed(store: KeyStore, clock: Clock) -> None:
    directory = KeyDirectory("", store, clock=clock)
    secret = await create(store, "alice")
    await store.revoke("alice")
    await directory.refresh()
    assert not directory.open
    assert directory.authenticate(bearer(secret)) is None
    assert directory.authenticate("") is None


async def test_disabled_and_expired_keys_are_refused(store: KeyStore, clock: Clock) -> None:
    directory = KeyDirectory("", store, clock=clock)
    disabled = await create(store, "disabled", disabled=True)
    expiring = await create(store, "expiring", expires_at=clock.now + timedelta(hours=1))
    await directory.refresh()
    assert directory.authenticate(bearer(disabled)) is None
    assert directory.authenticate(bearer(expiring)) is not None

    clock.advance(3600)
    assert directory.authenticate(bearer(expiring)) is None  # no refresh needed

    await store.update("disabled", {"disabled": False})
    await directory.refresh()
    assert directory.authenticate(bearer(disabled)) is not None


async def test_changes_to_limits_are_seen_at_the_next_refresh(
    store: KeyStore, clock: Clock
) -> None:
    directory = KeyDirectory("", store, clock=clock)
    secret = await create(store, "alice")
    await directory.refresh()
    assert not directory.has_budgets

    clock.advance(10)
    await store.update("alice", {"daily_token_budget": 1000, "models": ["smol"]})
    await directory.refresh()
    caller = directory.authenticate(bearer(secret))
    assert caller is not None and caller.key is not None
    assert (caller.key.daily_token_budget, caller.key.models) == (1000, ("smol",))
    assert directory.has_budgets


async def test_a_change_committed_late_with_an_older_time_is_not_missed(
    store: KeyStore, clock: Clock
) -> None:
    """A writer takes ``updated_at`` before it commits: a change can show up after a newer one
    has been read."""
    directory = KeyDirectory("", store, clock=clock)
    await create(store, "alice")
    clock.advance(1)
    await directory.refresh()

    clock.advance(-3)  # bob's writer read its clock before alice's change, but commits now
    late = await create(store, "bob")
    clock.advance(3)
    await directory.refresh()
    assert directory.authenticate(bearer(late)) is not None


async def test_ten_thousand_keys_authenticate_by_one_lookup(
    store: KeyStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = [f"sk-pfp-bench-{number:05d}" for number in range(10_000)]
    await store.bulk_create(
        [
            (f"key-{number:05d}", visible_prefix(secret), secret_digest(secret), {})
            for number, secret in enumerate(secrets)
        ]
    )
    directory = KeyDirectory("", store, clock=clock)
    await directory.refresh()
    assert directory.key_count == 10_000

    looked_at: list[str] = []
    usable = KeyRecord.usable

    def counting_usable(record: KeyRecord, now: Any) -> bool:
        looked_at.append(record.name)
        return usable(record, now)

    monkeypatch.setattr(KeyRecord, "usable", counting_usable)
    for number, secret in enumerate(secrets):
        caller = directory.authenticate(bearer(secret))
        assert caller is not None and caller.name == f"key-{number:05d}"
    assert directory.authenticate(bearer("sk-pfp-unknown")) is None
    # Each request looked at its own key only, never at the others.
    assert looked_at == [f"key-{number:05d}" for number in range(10_000)]

    clock.advance(1)
    await store.revoke("key-04242")
    clock.advance(0.5)
    await directory.refresh()
    assert directory.authenticate(bearer(secrets[4242])) is None
    assert directory.authenticate(bearer(secrets[4243])) is not None
