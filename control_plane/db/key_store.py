"""API keys in SQL: their limits, revocation, and the changes replicas poll for.

Like ``Store`` (whose engine it shares), every method runs one short transaction and returns
frozen records. Only a key's digest is kept, never its secret.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from control_plane.db.models import ApiKey, utc_now


@dataclass(frozen=True)
class KeyRecord:
    id: int
    name: str
    team: str
    prefix: str  # the first characters of the secret, shown to tell keys apart
    digest: str  # hex SHA-256 of the secret
    models: tuple[str, ...] | None  # None: every model
    requests_per_minute: int | None  # None, here and below: unlimited
    tokens_per_minute: int | None
    max_concurrent: int | None
    max_buffered: int | None
    daily_token_budget: int | None
    monthly_token_budget: int | None
    priority: str
    expires_at: datetime | None
    disabled: bool
    revoked_at: datetime | None
    created_at: datetime
    updated_at: datetime

    def usable(self, now: datetime) -> bool:
        """Whether the key may be used at ``now``: not disabled, revoked or expired."""
        if self.disabled or self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at


# The columns a caller may set when creating or updating a key, with their defaults.
KEY_FIELD_DEFAULTS: Mapping[str, Any] = {
    "team": "",
    "models": None,
    "requests_per_minute": None,
    "tokens_per_minute": None,
    "max_concurrent": None,
    "max_buffered": None,
    "daily_token_budget": None,
    "monthly_token_budget": None,
    "priority": "normal",
    "expires_at": None,
    "disabled": False,
}
KEY_FIELDS = frozenset(KEY_FIELD_DEFAULTS)


class KeyNameTaken(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"an API key named {name!r} already exists")
        self.name = name


class KeyStore:
    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._clock = clock

    async def create(
        self, name: str, *, prefix: str, digest: str, fields: Mapping[str, Any]
    ) -> KeyRecord:
        """A new key; fields not given take their defaults. Raises KeyNameTaken."""
        now = self._clock()
        row = ApiKey(
            name=name,
            prefix=prefix,
            digest=digest,
            created_at=now,
            updated_at=now,
            **_column_values({**KEY_FIELD_DEFAULTS, **fields}),
        )
        try:
            async with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            if await self.get(name) is not None:
                raise KeyNameTaken(name) from None
            raise  # the digest is taken: a duplicate secret, not a duplicate name
        return _record(row)

    async def get(self, name: str) -> KeyRecord | None:
        async with self._sessions() as session:
            row = await _find(session, name)
            return None if row is None else _record(row)

    async def list(self) -> builtins.list[KeyRecord]:
        """Every key, revoked ones included, by name."""
        async with self._sessions() as session:
            rows = await session.scalars(select(ApiKey).order_by(ApiKey.name))
            return [_record(row) for row in rows]

    async def update(self, name: str, fields: Mapping[str, Any]) -> KeyRecord | None:
        """Change some of a key's fields; None if there is no such key."""
        values = _column_values(fields)
        async with self._sessions.begin() as session:
            row = await _find(session, name)
            if row is None:
                return None
            for column, value in values.items():
                setattr(row, column, value)
            row.updated_at = self._clock()
            await session.flush()
            return _record(row)

    async def revoke(self, name: str) -> KeyRecord | None:
        """Revoke and disable a key for good; a key already revoked is returned unchanged."""
        async with self._sessions.begin() as session:
            row = await _find(session, name)
            if row is None:
                return None
            if row.revoked_at is None:
                now = self._clock()
                row.revoked_at = now
                row.disabled = True
                row.updated_at = now
                await session.flush()
            return _record(row)

    async def changed_since(self, after: datetime | None) -> builtins.list[KeyRecord]:
        """Keys updated after ``after`` (every key when None), least recently updated first.

        ``updated_at`` is the writer's clock, taken before its transaction commits, so a poller
        should ask again from a little before the newest ``updated_at`` it has seen: records
        are whole rows, so reading one twice is harmless.
        """
        query = select(ApiKey).order_by(ApiKey.updated_at, ApiKey.id)
        if after is not None:
            query = query.where(ApiKey.updated_at > after)
        async with self._sessions() as session:
            rows = await session.scalars(query)
            return [_record(row) for row in rows]

    async def count(self) -> int:
        async with self._sessions() as session:
            return await session.scalar(select(func.count()).select_from(ApiKey)) or 0

    async def bulk_create(self, rows: Sequence[tuple[str, str, str, Mapping[str, Any]]]) -> None:
        """Create many keys, each ``(name, prefix, digest, fields)``, in one transaction.

        All or nothing: raises KeyNameTaken if a name is taken or given twice.
        """
        now = self._clock()
        values = [
            {
                "name": name,
                "prefix": prefix,
                "digest": digest,
                "created_at": now,
                "updated_at": now,
                **_column_values({**KEY_FIELD_DEFAULTS, **fields}),
            }
            for name, prefix, digest, fields in rows
        ]
        if not values:
            return
        try:
            async with self._sessions.begin() as session:
                await session.execute(insert(ApiKey), values)
        except IntegrityError:
            taken = await self._first_taken_name([name for name, *_ in rows])
            if taken is not None:
                raise KeyNameTaken(taken) from None
            raise

    async def _first_taken_name(self, names: Sequence[str]) -> str | None:
        seen: set[str] = set()
        for name in names:
            if name in seen:
                return name
            seen.add(name)
        async with self._sessions() as session:
            for start in range(0, len(names), 500):
                existing = await session.scalar(
                    select(ApiKey.name).where(ApiKey.name.in_(names[start : start + 500])).limit(1)
                )
                if existing is not None:
                    return existing
        return None


def _column_values(fields: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - KEY_FIELDS
    if unknown:
        raise ValueError(f"not API key fields: {', '.join(sorted(unknown))}")
    values = dict(fields)
    if values.get("models") is not None:
        values["models"] = builtins.list(values["models"])
    return values


async def _find(session: AsyncSession, name: str) -> ApiKey | None:
    row: ApiKey | None = await session.scalar(select(ApiKey).where(ApiKey.name == name))
    return row


def _record(row: ApiKey) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        name=row.name,
        team=row.team,
        prefix=row.prefix,
        digest=row.digest,
        models=None if row.models is None else tuple(row.models),
        requests_per_minute=row.requests_per_minute,
        tokens_per_minute=row.tokens_per_minute,
        max_concurrent=row.max_concurrent,
        max_buffered=row.max_buffered,
        daily_token_budget=row.daily_token_budget,
        monthly_token_budget=row.monthly_token_budget,
        priority=row.priority,
        expires_at=row.expires_at,
        disabled=row.disabled,
        revoked_at=row.revoked_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
