"""Durable autoscaler state: the instances providers started, and the scaling events.

Like ``Store`` (whose engine it shares), every method runs one short transaction and returns
frozen records. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from control_plane.db.models import Instance, ScalingEvent, utc_now

BOOTING = "booting"  # launched; its agent has not reported the model loaded yet
READY = "ready"
DRAINING = "draining"
TERMINATED = "terminated"
LIVE_STATES = (BOOTING, READY, DRAINING)

# The cold-start milestones, in order; each is a column of ``instances``.
MILESTONES = ("running_at", "registered_at", "model_loaded_at", "first_token_at")


@dataclass(frozen=True)
class InstanceRow:
    provider: str
    provider_id: str
    pool: str
    state: str
    launched_at: datetime
    running_at: datetime | None = None
    registered_at: datetime | None = None
    model_loaded_at: datetime | None = None
    first_token_at: datetime | None = None
    terminated_at: datetime | None = None
    reason: str | None = None

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def cold_start(self) -> dict[str, float | None]:
        """Seconds from the launch call to each milestone (None: not reached)."""
        return {
            name.removesuffix("_at"): (
                None if moment is None else (moment - self.launched_at).total_seconds()
            )
            for name in MILESTONES
            for moment in (getattr(self, name),)
        }


@dataclass(frozen=True)
class ScalingEventRow:
    id: int
    time: datetime
    pool: str
    action: str
    from_count: int
    to_count: int
    reason: str


class ScalingStore:
    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    # instances

    async def add_instance(
        self,
        provider: str,
        provider_id: str,
        pool: str,
        launched_at: datetime,
        *,
        state: str = BOOTING,
        reason: str | None = None,
    ) -> InstanceRow:
        row = Instance(
            provider=provider,
            provider_id=provider_id,
            pool=pool,
            state=state,
            launched_at=launched_at,
            reason=reason,
        )
        async with self._sessions.begin() as session:
            session.add(row)
        return _instance_row(row)

    async def get_instance(self, provider_id: str) -> InstanceRow | None:
        async with self._sessions() as session:
            row = await session.scalar(select(Instance).where(Instance.provider_id == provider_id))
            return None if row is None else _instance_row(row)

    async def list_instances(
        self, pool: str | None = None, *, live_only: bool = False, limit: int = 200
    ) -> list[InstanceRow]:
        """Instances, newest launch first."""
        query = select(Instance).order_by(Instance.launched_at.desc(), Instance.id.desc())
        if pool is not None:
            query = query.where(Instance.pool == pool)
        if live_only:
            query = query.where(Instance.state.in_(LIVE_STATES))
        async with self._sessions() as session:
            return [_instance_row(row) for row in await session.scalars(query.limit(limit))]

    async def update_instance(self, provider_id: str, **values: Any) -> None:
        """Set columns of one instance (states, milestones); unknown ids are ignored."""
        unknown = set(values) - {*MILESTONES, "state", "reason"}
        if unknown:
            raise ValueError(f"cannot update instance column(s) {sorted(unknown)}")
        async with self._sessions.begin() as session:
            await session.execute(
                update(Instance).where(Instance.provider_id == provider_id).values(values)
            )

    async def mark_terminated(self, provider_id: str, reason: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(Instance)
                .where(Instance.provider_id == provider_id, Instance.state != TERMINATED)
                .values(state=TERMINATED, terminated_at=self._clock(), reason=reason)
            )

    async def recent_cold_starts(self, pool: str, limit: int = 5) -> list[float]:
        """Seconds from launch to model loaded of the pool's latest instances that got there."""
        query = (
            select(Instance)
            .where(Instance.pool == pool, Instance.model_loaded_at.is_not(None))
            .order_by(Instance.launched_at.desc())
            .limit(limit)
        )
        async with self._sessions() as session:
            rows = await session.scalars(query)
            return [
                (row.model_loaded_at - row.launched_at).total_seconds()
                for row in rows
                if row.model_loaded_at is not None
            ]

    # scaling events

    async def add_event(
        self, pool: str, action: str, from_count: int, to_count: int, reason: str
    ) -> ScalingEventRow:
        event = ScalingEvent(
            time=self._clock(),
            pool=pool,
            action=action,
            from_count=from_count,
            to_count=to_count,
            reason=reason,
        )
        async with self._sessions.begin() as session:
            session.add(event)
        return _event_row(event)

    async def list_events(self, pool: str | None = None, limit: int = 200) -> list[ScalingEventRow]:
        """Scaling events, newest first."""
        query = select(ScalingEvent).order_by(ScalingEvent.id.desc()).limit(limit)
        if pool is not None:
            query = query.where(ScalingEvent.pool == pool)
        async with self._sessions() as session:
            return [_event_row(event) for event in await session.scalars(query)]


def _instance_row(row: Instance) -> InstanceRow:
    return InstanceRow(
        provider=row.provider,
        provider_id=row.provider_id,
        pool=row.pool,
        state=row.state,
        launched_at=row.launched_at,
        running_at=row.running_at,
        registered_at=row.registered_at,
        model_loaded_at=row.model_loaded_at,
        first_token_at=row.first_token_at,
        terminated_at=row.terminated_at,
        reason=row.reason,
    )


def _event_row(event: ScalingEvent) -> ScalingEventRow:
    return ScalingEventRow(
        id=event.id,
        time=event.time,
        pool=event.pool,
        action=event.action,
        from_count=event.from_count,
        to_count=event.to_count,
        reason=event.reason,
    )
