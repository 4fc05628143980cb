"""Usage counters in SQL, written by every replica at once: per key, model and hour for
budgets and reports, per key, replica and minute for the shared rate limits.

Writes add to rows (``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n``), so replicas
writing the same row at the same time lose nothing. Like ``Store``, whose engine it shares,
every method runs one short transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from control_plane.db.models import Base, KeyUsage, RateWindow, utc_now

# Minutes of rate windows kept before the newest one written; older rows are deleted.
RATE_MINUTES_KEPT = 5

USAGE_COUNTERS = ("requests", "prompt_tokens", "completion_tokens", "errors", "queue_seconds")


@dataclass(frozen=True)
class UsageDelta:
    """Usage to add to a key's row for a model and an hour (floored to the start of its hour)."""

    key_id: int
    model: str
    hour: datetime
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0
    queue_seconds: float = 0.0


@dataclass(frozen=True)
class UsageRow:
    key_id: int
    model: str
    hour: datetime
    requests: int
    prompt_tokens: int
    completion_tokens: int
    errors: int
    queue_seconds: float


class UsageStore:
    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._dialect = engine.dialect.name
        self._clock = clock

    async def add(self, deltas: Sequence[UsageDelta]) -> None:
        """Add every delta to its row, creating rows as needed, in one transaction."""
        totals: dict[tuple[int, str, datetime], dict[str, Any]] = {}
        for delta in deltas:
            hour = start_of_hour(delta.hour)
            row = totals.setdefault(
                (delta.key_id, delta.model, hour),
                {"key_id": delta.key_id, "model": delta.model, "hour": hour}
                | dict.fromkeys(USAGE_COUNTERS, 0),
            )
            for counter in USAGE_COUNTERS:
                row[counter] += getattr(delta, counter)
        async with self._sessions.begin() as session:
            await self._add_rows(session, KeyUsage, ["key_id", "model", "hour"], totals)

    async def rows(
        self,
        *,
        key_ids: Collection[int] | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[UsageRow]:
        """Usage rows with ``since <= hour < until``, by hour, then key, then model."""
        query = select(KeyUsage).order_by(KeyUsage.hour, KeyUsage.key_id, KeyUsage.model)
        if key_ids is not None:
            query = query.where(KeyUsage.key_id.in_(list(key_ids)))
        if model is not None:
            query = query.where(KeyUsage.model == model)
        if since is not None:
            query = query.where(KeyUsage.hour >= since)
        if until is not None:
            query = query.where(KeyUsage.hour < until)
        async with self._sessions() as session:
            return [_usage_row(row) for row in await session.scalars(query)]

    async def tokens_since(self, since: datetime) -> dict[int, int]:
        """Prompt plus completion tokens of each key in the hours starting at or after ``since``."""
        tokens = func.sum(KeyUsage.prompt_tokens + KeyUsage.completion_tokens)
        query = (
            select(KeyUsage.key_id, tokens).where(KeyUsage.hour >= since).group_by(KeyUsage.key_id)
        )
        async with self._sessions() as session:
            return {key_id: int(total) for key_id, total in await session.execute(query)}

    async def add_rate_counts(
        self, replica: str, counts: Mapping[tuple[int, int], tuple[int, int]]
    ) -> None:
        """Add ``(key_id, minute) -> (requests, tokens)`` to this replica's rate windows.

        Rows of every replica more than RATE_MINUTES_KEPT minutes older than the newest minute
        given are deleted: the caller's minutes are the clock that matters here.
        """
        if not counts:
            return
        rows = {
            (key_id, replica, minute): {
                "key_id": key_id,
                "replica": replica,
                "minute": minute,
                "requests": requests,
                "tokens": tokens,
            }
            for (key_id, minute), (requests, tokens) in counts.items()
        }
        oldest_kept = max(minute for _, minute in counts) - RATE_MINUTES_KEPT
        async with self._sessions.begin() as session:
            await self._add_rows(session, RateWindow, ["key_id", "replica", "minute"], rows)
            await session.execute(delete(RateWindow).where(RateWindow.minute < oldest_kept))

    async def others_rate_counts(
        self, replica: str, since_minute: int
    ) -> dict[tuple[int, int], tuple[int, int]]:
        """``(key_id, minute) -> (requests, tokens)`` summed over the other replicas, for the
        minutes from ``since_minute`` on."""
        query = (
            select(
                RateWindow.key_id,
                RateWindow.minute,
                func.sum(RateWindow.requests),
                func.sum(RateWindow.tokens),
            )
            .where(RateWindow.replica != replica, RateWindow.minute >= since_minute)
            .group_by(RateWindow.key_id, RateWindow.minute)
        )
        async with self._sessions() as session:
            return {
                (key_id, minute): (int(requests), int(tokens))
                for key_id, minute, requests, tokens in await session.execute(query)
            }

    async def _add_rows(
        self,
        session: AsyncSession,
        model: type[Base],
        key: list[str],
        rows: Mapping[tuple[Any, ...], dict[str, Any]],
    ) -> None:
        if not rows:
            return
        # In primary key order, so two transactions adding to the same rows lock them in the
        # same order and cannot deadlock on PostgreSQL.
        ordered = [rows[row_key] for row_key in sorted(rows)]
        insert = self._insert(model)
        counters = [column for column in ordered[0] if column not in key]
        additions = {
            column: getattr(model, column) + getattr(insert.excluded, column) for column in counters
        }
        await session.execute(
            insert.on_conflict_do_update(index_elements=key, set_=additions), ordered
        )

    def _insert(self, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
        if self._dialect == "postgresql":
            return postgresql.insert(model)
        if self._dialect == "sqlite":
            return sqlite.insert(model)
        raise NotImplementedError(f"no additive upsert for {self._dialect} databases")


def start_of_hour(moment: datetime) -> datetime:
    """The start of the UTC hour ``moment`` is in."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _usage_row(row: KeyUsage) -> UsageRow:
    return UsageRow(
        key_id=row.key_id,
        model=row.model,
        hour=row.hour,
        requests=row.requests,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        errors=row.errors,
        queue_seconds=row.queue_seconds,
    )
