"""What the tenancy tests share: a settable clock, key records, requests, a migrated SQLite.

(No tests here; the name keeps it among the tenancy test files.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from control_plane.db.engine import create_engine
from control_plane.db.key_store import KeyRecord
from control_plane.db.migrate import upgrade
from control_plane.tenancy.callers import Caller
from paddler import protocol

START = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)  # at the turn of a minute


class Clock:
    """A wall clock that moves only when told to."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def key_record(key_id: int = 1, name: str = "alice", **fields: Any) -> KeyRecord:
    """A key as the KeyStore would return it, unlimited unless ``fields`` say otherwise."""
    record = KeyRecord(
        id=key_id,
        name=name,
        team="",
        prefix="sk-pfp-abcde",
        digest=f"{key_id:064x}",
        models=None,
        requests_per_minute=None,
        tokens_per_minute=None,
        max_concurrent=None,
        max_buffered=None,
        daily_token_budget=None,
        monthly_token_budget=None,
        priority="normal",
        expires_at=None,
        disabled=False,
        revoked_at=None,
        created_at=START,
        updated_at=START,
    )
    return replace(record, **fields)


def caller(key_id: int = 1, name: str = "alice", **fields: Any) -> Caller:
    record = key_record(key_id, name, **fields)
    return Caller(key=record, owner=record.digest)


def chat(prompt_characters: int = 40, max_tokens: int | None = 10) -> protocol.GenerationRequest:
    """A chat request estimated at ``prompt_characters / 4`` prompt tokens plus ``max_tokens``."""
    return protocol.GenerationRequest(
        kind="chat",
        messages=(protocol.ChatMessage(role="user", content="x" * prompt_characters),),
        sampling=protocol.SamplingParams(max_tokens=max_tokens),
    )


async def migrated_sqlite(tmp_path: Path) -> AsyncEngine:
    """An engine on a new SQLite file with the whole schema."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'state' / 'state.db'}"
    await asyncio.to_thread(upgrade, url)
    return create_engine(url)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated SQLite database (a plugin fixture: see tests/conftest.py)."""
    engine = await migrated_sqlite(tmp_path)
    yield engine
    await engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()
