"""The Store, against real SQLite files migrated with Alembic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from control_plane.db.engine import create_engine
from control_plane.db.migrate import upgrade
from control_plane.db.models import Pool
from control_plane.db.store import AgentRecord, Store

START = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock that moves one second forward every time it is read."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
async def database_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'state' / 'state.db'}"
    await asyncio.to_thread(upgrade, url)
    return url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(database_url: str, clock: Clock) -> AsyncIterator[Store]:
    store = Store(create_engine(database_url), clock=clock)
    yield store
    await store.close()


async def test_ensure_pool_creates_a_pool(store: Store, clock: Clock) -> None:
    pool = await store.ensure_pool("smol", "/models/smol.gguf", 4)

    assert pool.name == "smol"
    assert pool.model_source == "/models/smol.gguf"
    assert pool.slots_per_agent == 4
    assert pool.settings == {}
    assert pool.created_at == clock.now
    assert pool.created_at.tzinfo is not None
    assert await store.get_pool("smol") == pool
    assert await store.list_pools() == [pool]


async def test_ensure_pool_returns_an_existing_pool_unchanged(store: Store) -> None:
    first = await store.ensure_pool("smol", "/models/smol.gguf", 4)
    second = await store.ensure_pool("smol", "/models/other.gguf", 8)

    assert second == first
    assert await store.list_pools() == [first]


async def test_concurrent_ensure_pool_creates_one_pool(store: Store) -> None:
    pools = await asyncio.gather(
        *(store.ensure_pool("smol", f"/models/{n}.gguf", n) for n in range(1, 9))
    )

    assert len({pool.model_source for pool in pools}) == 1
    assert len(await store.list_pools()) == 1


async def test_pools_are_listed_by_name(store: Store) -> None:
    for name in ["qwen", "llama", "smol"]:
        await store.ensure_pool(name, f"/models/{name}.gguf", 1)

    assert [pool.name for pool in await store.list_pools()] == ["llama", "qwen", "smol"]
    assert await store.get_pool("missing") is None


async def test_agent_lifecycle(store: Store, clock: Clock) -> None:
    await store.ensure_pool("smol", "/models/smol.gguf", 4)

    first_connection = await store.agent_connected(
        "a1", "gpu-1", "smol", "loading", "10.0.0.5:4711"
    )
    connected_at = clock.now
    (agent,) = await store.list_agents()
    assert agent == AgentRecord(
        id="a1",
        name="gpu-1",
        pool_name="smol",
        first_seen=connected_at,
        last_seen=connected_at,
        last_state="loading",
        connected=True,
    )

    assert await store.get_agent("a1") == agent
    assert await store.get_agent("nobody") is None

    await store.agent_state_changed("a1", "ready")
    (agent,) = await store.list_agents()
    assert agent.last_state == "ready"
    assert agent.last_seen == clock.now

    await store.agent_disconnected("a1", first_connection, "socket closed")
    (agent,) = await store.list_agents()
    assert not agent.connected
    assert agent.last_seen == clock.now
    (connection,) = await store.list_connections("a1")
    assert connection.id == first_connection
    assert connection.agent_id == "a1"
    assert connection.connected_at == connected_at
    assert connection.disconnected_at == clock.now
    assert connection.remote_address == "10.0.0.5:4711"
    assert connection.disconnect_reason == "socket closed"

    second_connection = await store.agent_connected("a1", "gpu-1b", "smol", "loading", None)
    (agent,) = await store.list_agents()
    assert agent.connected
    assert agent.name == "gpu-1b"
    assert agent.first_seen == connected_at
    assert agent.last_seen == clock.now

    connections = await store.list_connections("a1")
    assert [c.id for c in connections] == [second_connection, first_connection]
    assert connections[0].disconnected_at is None
    assert connections[0].remote_address is None
    assert [c.id for c in await store.list_connections("a1", limit=1)] == [second_connection]


async def test_agent_can_move_to_another_pool(store: Store) -> None:
    await store.ensure_pool("smol", "/models/smol.gguf", 4)
    await store.ensure_pool("qwen", "/models/qwen.gguf", 2)
    await store.agent_connected("a1", "gpu-1", "smol", "ready", None)

    await store.agent_connected("a1", "gpu-1", "qwen", "loading", None)

    (agent,) = await store.list_agents()
    assert agent.pool_name == "qwen"
    assert len(await store.list_connections("a1")) == 2


async def test_closing_a_stale_connection_keeps_a_newer_one(store: Store) -> None:
    await store.ensure_pool("smol", "/models/smol.gguf", 4)
    old = await store.agent_connected("a1", "gpu-1", "smol", "ready", None)
    new = await store.agent_connected("a1", "gpu-1", "smol", "ready", None)

    await store.agent_disconnected("a1", old, "replaced")

    (agent,) = await store.list_agents()
    assert agent.connected
    newest, oldest = await store.list_connections("a1")
    assert (newest.id, newest.disconnected_at) == (new, None)
    assert (oldest.id, oldest.disconnect_reason) == (old, "replaced")


async def test_disconnecting_twice_keeps_the_first_reason(store: Store) -> None:
    await store.ensure_pool("smol", "/models/smol.gguf", 4)
    connection = await store.agent_connected("a1", "gpu-1", "smol", "ready", None)

    await store.agent_disconnected("a1", connection, "socket closed")
    await store.agent_disconnected("a1", connection, "timeout")

    (record,) = await store.list_connections("a1")
    assert record.disconnect_reason == "socket closed"


async def test_state_change_of_an_unknown_agent_does_nothing(store: Store) -> None:
    await store.agent_state_changed("ghost", "ready")
    assert await store.list_agents() == []


async def test_mark_all_disconnected(store: Store, clock: Clock) -> None:
    await store.ensure_pool("smol", "/models/smol.gguf", 4)
    closed = await store.agent_connected("a1", "gpu-1", "smol", "ready", None)
    await store.agent_disconnected("a1", closed, "socket closed")
    await store.agent_connected("a1", "gpu-1", "smol", "ready", None)
    await store.agent_connected("a2", "gpu-2", "smol", "ready", None)
    last_seen = clock.now

    await store.mark_all_disconnected("control plane restarted")

    agents = await store.list_agents()
    assert [(a.id, a.connected) for a in agents] == [("a1", False), ("a2", False)]
    assert agents[1].last_seen == last_seen
    reasons = [c.disconnect_reason for c in await store.list_connections("a1")]
    assert reasons == ["control plane restarted", "socket closed"]
    (a2_connection,) = await store.list_connections("a2")
    assert a2_connection.disconnected_at == clock.now


async def test_data_survives_reopening(database_url: str) -> None:
    store = Store.from_url(database_url)
    pool = await store.ensure_pool("smol", "/models/smol.gguf", 4)
    connection = await store.agent_connected("a1", "gpu-1", "smol", "ready", "10.0.0.5:1")
    agents = await store.list_agents()
    await store.close()

    reopened = Store.from_url(database_url)
    try:
        assert await reopened.list_pools() == [pool]
        assert await reopened.list_agents() == agents
        assert [c.id for c in await reopened.list_connections("a1")] == [connection]
    finally:
        await reopened.close()


async def test_agent_of_an_unknown_pool_is_refused(store: Store) -> None:
    with pytest.raises(IntegrityError):
        await store.agent_connected("a1", "gpu-1", "missing", "ready", None)
    assert await store.list_agents() == []


async def test_agent_cannot_move_to_an_unknown_pool(store: Store) -> None:
    await store.ensure_pool("smol", "/models/smol.gguf", 4)
    await store.agent_connected("a1", "gpu-1", "smol", "ready", None)

    with pytest.raises(IntegrityError):
        await store.agent_connected("a1", "gpu-1", "missing", "ready", None)
    (agent,) = await store.list_agents()
    assert agent.pool_name == "smol"


async def test_concurrent_first_connections_of_one_agent(store: Store) -> None:
    await store.ensure_pool("smol", "/models/smol.gguf", 4)

    ids = await asyncio.gather(
        *(store.agent_connected("a1", "gpu-1", "smol", "ready", None) for _ in range(5))
    )

    assert len(set(ids)) == 5
    assert len(await store.list_agents()) == 1
    assert len(await store.list_connections("a1")) == 5


async def test_deleting_a_pool_deletes_its_agents_and_connections(store: Store) -> None:
    await store.ensure_pool("smol", "/models/smol.gguf", 4)
    await store.ensure_pool("qwen", "/models/qwen.gguf", 2)
    await store.agent_connected("a1", "gpu-1", "smol", "ready", None)
    await store.agent_connected("a2", "gpu-2", "qwen", "ready", None)

    async with store.engine.begin() as connection:
        await connection.execute(delete(Pool).where(Pool.name == "smol"))

    assert [agent.id for agent in await store.list_agents()] == ["a2"]
    assert await store.list_connections("a1") == []
