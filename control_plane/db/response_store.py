"""Responses kept by the Responses API, each readable only by the API key that made it and only
until it expires.

Like ``Store`` (whose engine it shares), every method runs one short transaction and returns
frozen records. Expired rows are never returned; :meth:`ResponseStore.save` deletes them, so the
table holds at most what was written within one retention period (plus whatever expired since
the last write).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from control_plane.db.models import StoredResponse, utc_now


@dataclass(frozen=True)
class ResponseRecord:
    id: str
    owner: str
    created_at: datetime
    expires_at: datetime
    conversation: list[Any]  # chat messages (as JSON) that led to the response, then its answer
    input_items: list[Any]  # the input items of the request, as the API lists them
    body: dict[str, Any]  # the response object as it was served


class ResponseStore:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        retention: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """``retention``: seconds a saved response is kept."""
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._retention = timedelta(seconds=retention)
        self._clock = clock

    async def save(
        self,
        id: str,
        owner: str,
        *,
        conversation: list[Any],
        input_items: list[Any],
        body: dict[str, Any],
    ) -> ResponseRecord:
        """Keep a response for the retention period; rows that have expired go at the same time."""
        now = self._clock()
        row = StoredResponse(
            id=id,
            owner=owner,
            created_at=now,
            expires_at=now + self._retention,
            conversation=conversation,
            input_items=input_items,
            body=body,
        )
        async with self._sessions.begin() as session:
            await session.execute(delete(StoredResponse).where(StoredResponse.expires_at <= now))
            session.add(row)
        return _record(row)

    async def get(self, id: str, owner: str) -> ResponseRecord | None:
        """The response ``id`` if ``owner`` made it and it has not expired."""
        query = select(StoredResponse).where(
            StoredResponse.id == id,
            StoredResponse.owner == owner,
            StoredResponse.expires_at > self._clock(),
        )
        async with self._sessions() as session:
            row = await session.scalar(query)
            return None if row is None else _record(row)

    async def delete(self, id: str, owner: str) -> bool:
        """Remove the response ``id`` if ``owner`` made it and it has not expired."""
        statement = delete(StoredResponse).where(
            StoredResponse.id == id,
            StoredResponse.owner == owner,
            StoredResponse.expires_at > self._clock(),
        )
        return await self._deleted(statement) > 0

    async def sweep(self) -> int:
        """Delete every expired response; how many there were."""
        return await self._deleted(
            delete(StoredResponse).where(StoredResponse.expires_at <= self._clock())
        )

    async def _deleted(self, statement: Delete) -> int:
        async with self._sessions.begin() as session:
            result = await session.execute(statement)
        return cast("CursorResult[Any]", result).rowcount


def _record(row: StoredResponse) -> ResponseRecord:
    return ResponseRecord(
        id=row.id,
        owner=row.owner,
        created_at=row.created_at,
        expires_at=row.expires_at,
        conversation=row.conversation,
        input_items=row.input_items,
        body=row.body,
    )
