"""The control plane's durable state, behind a small async API.

Every method runs its own short transaction and returns frozen records, never ORM objects,
so callers cannot accidentally lazy-load or mutate rows outside a session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from control_plane.db.engine import create_engine
from control_plane.db.models import Agent, AgentConnection, Pool, utc_now


@dataclass(frozen=True)
class PoolRecord:
    name: str
    model_source: str
    slots_per_agent: int
    settings: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class AgentRecord:
    id: str
    name: str
    pool_name: str
    first_seen: datetime
    last_seen: datetime
    last_state: str
    connected: bool


@dataclass(frozen=True)
class ConnectionRecord:
    id: int
    agent_id: str
    connected_at: datetime
    disconnected_at: datetime | None
    remote_address: str | None
    disconnect_reason: str | None


class Store:
    """Durable state over an async engine whose schema is already migrated."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    @classmethod
    def from_url(cls, url: str) -> Store:
        return cls(create_engine(url))

    async def close(self) -> None:
        await self.engine.dispose()

    # Pools

    async def list_pools(self) -> list[PoolRecord]:
        async with self._sessions() as session:
            pools = await session.scalars(select(Pool).order_by(Pool.name))
            return [_pool_record(pool) for pool in pools]

    async def get_pool(self, name: str) -> PoolRecord | None:
        async with self._sessions() as session:
            pool = await _find_pool(session, name)
            return None if pool is None else _pool_record(pool)

    async def ensure_pool(self, name: str, model_source: str, slots_per_agent: int) -> PoolRecord:
        """The pool called ``name``, created with these settings if it does not exist yet.

        An existing pool is returned unchanged. Safe against concurrent creation: the loser
        of the race gets an IntegrityError from the unique name and reads the winner's row.
        """
        existing = await self.get_pool(name)
        if existing is not None:
            return existing
        now = self._clock()
        try:
            async with self._sessions.begin() as session:
                session.add(
                    Pool(
                        name=name,
                        model_source=model_source,
                        slots_per_agent=slots_per_agent,
                        settings={},
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            pass
        created = await self.get_pool(name)
        if created is None:  # created and deleted again in between: vanishingly rare
            raise LookupError(f"pool {name!r} disappeared while being created")
        return created

    async def update_pool(
        self, name: str, model_source: str, slots_per_agent: int, settings: dict[str, Any]
    ) -> PoolRecord | None:
        """Change a pool's model, slots and settings; None if there is no such pool."""
        async with self._sessions.begin() as session:
            pool = await _find_pool(session, name)
            if pool is None:
                return None
            pool.model_source = model_source
            pool.slots_per_agent = slots_per_agent
            pool.settings = settings
            pool.updated_at = self._clock()
            await session.flush()
            return _pool_record(pool)

    async def delete_pool(self, name: str) -> bool:
        """Delete a pool with its agents' rows; False if there was none."""
        async with self._sessions.begin() as session:
            pool = await _find_pool(session, name)
            if pool is None:
                return False
            await session.delete(pool)
            return True

    # Agents

    async def agent_connected(
        self,
        agent_id: str,
        name: str,
        pool_name: str,
        state: str,
        remote_address: str | None,
    ) -> int:
        """Record that an agent connected; returns the id of the new connection row.

        The agent is created or updated (``first_seen`` is kept). Its pool must exist.
        """
        now = self._clock()
        values = {
            "name": name,
            "pool_name": pool_name,
            "last_seen": now,
            "last_state": state,
            "connected": True,
        }
        for attempt in range(2):
            try:
                async with self._sessions.begin() as session:
                    # Write first (UPDATE, then INSERT if there was no row), so that on SQLite
                    # the transaction takes the write lock at once instead of upgrading a read.
                    updated = await session.execute(
                        update(Agent).where(Agent.id == agent_id).values(values)
                    )
                    if cast("CursorResult[Any]", updated).rowcount == 0:
                        session.add(Agent(id=agent_id, first_seen=now, **values))
                        await session.flush()
                    connection = AgentConnection(
                        agent_id=agent_id, connected_at=now, remote_address=remote_address
                    )
                    session.add(connection)
                    await session.flush()
                    return connection.id
            except IntegrityError:
                # Lost a race inserting the same new agent: it exists now, so retry once as
                # an update. A second IntegrityError is real (e.g. an unknown pool).
                if attempt == 1 or not await self._agent_exists(agent_id):
                    raise
        raise AssertionError("unreachable")

    async def agent_state_changed(self, agent_id: str, state: str) -> None:
        """Record an agent's new state. Does nothing for an unknown agent."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(Agent)
                .where(Agent.id == agent_id)
                .values(last_state=state, last_seen=self._clock())
            )

    async def agent_disconnected(self, agent_id: str, connection_id: int, reason: str) -> None:
        """Close a connection; the agent stays ``connected`` only if another one is open."""
        now = self._clock()
        async with self._sessions.begin() as session:
            await session.execute(
                update(AgentConnection)
                .where(
                    AgentConnection.id == connection_id,
                    AgentConnection.agent_id == agent_id,
                    AgentConnection.disconnected_at.is_(None),
                )
                .values(disconnected_at=now, disconnect_reason=reason)
            )
            still_open = (
                exists()
                .where(
                    AgentConnection.agent_id == agent_id,
                    AgentConnection.disconnected_at.is_(None),
                )
                .correlate(None)
            )
            await session.execute(
                update(Agent)
                .where(Agent.id == agent_id)
                .values(connected=still_open, last_seen=now)
            )

    async def mark_all_disconnected(self, reason: str) -> None:
        """Close every connection left open, e.g. by a crash; call when the control plane starts.

        ``last_seen`` is left alone: it is the last time an agent was really seen.
        """
        async with self._sessions.begin() as session:
            await session.execute(
                update(AgentConnection)
                .where(AgentConnection.disconnected_at.is_(None))
                .values(disconnected_at=self._clock(), disconnect_reason=reason)
            )
            await session.execute(update(Agent).where(Agent.connected).values(connected=False))

    async def list_agents(self) -> list[AgentRecord]:
        """All agents ever seen, ordered by pool then id."""
        async with self._sessions() as session:
            agents = await session.scalars(select(Agent).order_by(Agent.pool_name, Agent.id))
            return [_agent_record(agent) for agent in agents]

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        async with self._sessions() as session:
            agent = await session.get(Agent, agent_id)
            return _agent_record(agent) if agent is not None else None

    async def list_connections(self, agent_id: str, limit: int = 50) -> list[ConnectionRecord]:
        """An agent's most recent connections, newest first."""
        async with self._sessions() as session:
            connections = await session.scalars(
                select(AgentConnection)
                .where(AgentConnection.agent_id == agent_id)
                .order_by(AgentConnection.connected_at.desc(), AgentConnection.id.desc())
                .limit(limit)
            )
            return [_connection_record(connection) for connection in connections]

    async def _agent_exists(self, agent_id: str) -> bool:
        async with self._sessions() as session:
            return await session.get(Agent, agent_id) is not None


async def _find_pool(session: AsyncSession, name: str) -> Pool | None:
    pool: Pool | None = await session.scalar(select(Pool).where(Pool.name == name))
    return pool


def _pool_record(pool: Pool) -> PoolRecord:
    return PoolRecord(
        name=pool.name,
        model_source=pool.model_source,
        slots_per_agent=pool.slots_per_agent,
        settings=dict(pool.settings),
        created_at=pool.created_at,
    )


def _agent_record(agent: Agent) -> AgentRecord:
    return AgentRecord(
        id=agent.id,
        name=agent.name,
        pool_name=agent.pool_name,
        first_seen=agent.first_seen,
        last_seen=agent.last_seen,
        last_state=agent.last_state,
        connected=agent.connected,
    )


def _connection_record(connection: AgentConnection) -> ConnectionRecord:
    return ConnectionRecord(
        id=connection.id,
        agent_id=connection.agent_id,
        connected_at=connection.connected_at,
        disconnected_at=connection.disconnected_at,
        remote_address=connection.remote_address,
        disconnect_reason=connection.disconnect_reason,
    )
