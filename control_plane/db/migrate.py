"""Running the Alembic migrations in ``migrations/`` without an ``alembic.ini``.

These functions are synchronous and start their own event loop, so call them from a thread
without one: ``await asyncio.to_thread(upgrade, url)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, make_url, pool
from sqlalchemy.ext.asyncio import create_async_engine

import migrations

T = TypeVar("T")


def alembic_config(url: str) -> Config:
    """An Alembic Config for the packaged migrations, pointing at ``url``."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    # Config options go through ConfigParser interpolation: escape "%" (as in an encoded
    # password).
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def head() -> str:
    """The newest revision id of the packaged migrations."""
    revision = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if revision is None:
        raise RuntimeError("no migrations found")
    return revision


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at; None if it has never been migrated."""
    if _missing_sqlite_file(url):
        return None  # do not create the file just to look at it
    return asyncio.run(_current(url))


def _missing_sqlite_file(url: str) -> bool:
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return False
    return not database.startswith("file:") and not Path(database).exists()


async def _current(url: str) -> str | None:
    return await run_with_connection(url, _current_revision)


async def run_with_connection(url: str, function: Callable[[Connection], T]) -> T:
    """Run ``function`` on a synchronous connection to ``url`` (a short-lived engine)."""
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(function)
    finally:
        await engine.dispose()


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
