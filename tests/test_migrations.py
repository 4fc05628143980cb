"""The Alembic migrations, on SQLite and (when its binaries are installed) PostgreSQL."""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from control_plane.db import migrate
from control_plane.db.migrate import current, downgrade, head, upgrade
from control_plane.db.models import Base

INITIAL_TABLES = {"pools", "agents", "agent_connections"}
AUTOSCALER_TABLES = INITIAL_TABLES | {"instances", "scaling_events"}
TABLES = AUTOSCALER_TABLES | {"responses", "api_keys", "key_usage", "rate_windows"}


class PostgresServer:
    """A throwaway PostgreSQL cluster on a random loopback port, trusting local connections."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.data_dir = Path(tempfile.mkdtemp(prefix="paddler-pg-"))
        self.port = _free_port()
        # initdb and postgres refuse to run as root.
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        cluster = str(self.data_dir / "cluster")
        self._run("initdb", "-D", cluster, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.data_dir} -c fsync=off"
        )
        log = str(self.data_dir / "postgres.log")
        self._run("pg_ctl", "-D", cluster, "-l", log, "-o", options, "-w", "start")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data_dir / "cluster"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy async URL."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        server_url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}"

        async def create() -> None:
            engine = create_async_engine(
                f"{server_url}/postgres", isolation_level="AUTOCOMMIT", poolclass=pool.NullPool
            )
            try:
                async with engine.connect() as connection:
                    await connection.execute(text(f'CREATE DATABASE "{name}"'))
            finally:
                await engine.dispose()

        asyncio.run(create())
        return f"{server_url}/{name}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _postgres_bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = _postgres_bin_dir()
    if bin_dir is None:
        pytest.fail("PostgreSQL is not installed: apt-get install -y postgresql (.ci/run does)")
    server = PostgresServer(bin_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        # A directory that does not exist yet: upgrade must create it.
        return f"sqlite+aiosqlite:///{tmp_path / 'state' / 'state.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


def run_sync(url: str, function: Any) -> Any:
    """Run ``function(sync_connection)`` against ``url`` and return its result."""
    return asyncio.run(migrate.run_with_connection(url, function))


def table_names(url: str) -> set[str]:
    names: list[str] = run_sync(url, lambda connection: inspect(connection).get_table_names())
    return set(names) - {"alembic_version"}


def schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    differences: list[Any] = compare_metadata(context, Base.metadata)
    return differences


def test_head_is_the_api_keys_revision() -> None:
    assert head() == "0004"


def test_current_is_none_for_a_missing_database(tmp_path: Path) -> None:
    path = tmp_path / "nothing" / "state.db"
    assert current(f"sqlite+aiosqlite:///{path}") is None
    assert not path.exists()


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    upgrade(database_url)
    assert current(database_url) == head()
    assert table_names(database_url) == TABLES

    downgrade(database_url, "base")
    assert current(database_url) is None
    assert table_names(database_url) == set()

    upgrade(database_url)
    assert current(database_url) == head()
    assert table_names(database_url) == TABLES


def test_autoscaler_revision_up_and_down_keeps_the_initial_tables(database_url: str) -> None:
    upgrade(database_url, "0001")
    assert table_names(database_url) == INITIAL_TABLES

    upgrade(database_url, "0002")
    assert current(database_url) == "0002"
    assert table_names(database_url) == AUTOSCALER_TABLES

    downgrade(database_url, "0001")
    assert current(database_url) == "0001"
    assert table_names(database_url) == INITIAL_TABLES

    upgrade(database_url)
    assert table_names(database_url) == TABLES


def test_migrated_schema_matches_the_models(database_url: str) -> None:
    upgrade(database_url)
    assert run_sync(database_url, schema_differences) == []


def test_migrated_constraints_and_indexes(database_url: str) -> None:
    upgrade(database_url)

    def describe(connection: Connection) -> dict[str, Any]:
        inspector = inspect(connection)
        return {
            "pool_unique": inspector.get_unique_constraints("pools"),
            "agent_fks": inspector.get_foreign_keys("agents"),
            "connection_fks": inspector.get_foreign_keys("agent_connections"),
            "connection_indexes": inspector.get_indexes("agent_connections"),
            "instance_unique": inspector.get_unique_constraints("instances"),
            "instance_indexes": inspector.get_indexes("instances"),
            "event_indexes": inspector.get_indexes("scaling_events"),
            "key_unique": inspector.get_unique_constraints("api_keys"),
            "key_indexes": inspector.get_indexes("api_keys"),
            "usage_key": inspector.get_pk_constraint("key_usage"),
            "usage_indexes": inspector.get_indexes("key_usage"),
            "window_key": inspector.get_pk_constraint("rate_windows"),
            "window_indexes": inspector.get_indexes("rate_windows"),
        }

    schema = run_sync(database_url, describe)
    assert [(uq["name"], uq["column_names"]) for uq in schema["pool_unique"]] == [
        ("uq_pools_name", ["name"])
    ]
    (agent_fk,) = schema["agent_fks"]
    assert agent_fk["referred_table"] == "pools"
    assert agent_fk["referred_columns"] == ["name"]
    assert agent_fk["options"].get("ondelete") == "CASCADE"
    (connection_fk,) = schema["connection_fks"]
    assert connection_fk["referred_table"] == "agents"
    assert connection_fk["options"].get("ondelete") == "CASCADE"
    assert [(ix["name"], ix["column_names"]) for ix in schema["connection_indexes"]] == [
        ("ix_agent_connections_agent_id", ["agent_id"])
    ]
    assert [(uq["name"], uq["column_names"]) for uq in schema["instance_unique"]] == [
        ("uq_instances_provider_id", ["provider_id"])
    ]
    assert [
        (ix["name"], ix["column_names"])
        for ix in schema["instance_indexes"]
        if ix["name"].startswith("ix_")  # PostgreSQL lists the unique constraint's index too
    ] == [("ix_instances_pool", ["pool"])]
    assert [(ix["name"], ix["column_names"]) for ix in schema["event_indexes"]] == [
        ("ix_scaling_events_pool", ["pool"])
    ]
    assert sorted((uq["name"], uq["column_names"]) for uq in schema["key_unique"]) == [
        ("uq_api_keys_digest", ["digest"]),
        ("uq_api_keys_name", ["name"]),
    ]
    assert [
        (ix["name"], ix["column_names"])
        for ix in schema["key_indexes"]
        if ix["name"].startswith("ix_")
    ] == [("ix_api_keys_updated_at", ["updated_at"])]
    assert schema["usage_key"]["constrained_columns"] == ["key_id", "model", "hour"]
    assert [(ix["name"], ix["column_names"]) for ix in schema["usage_indexes"]] == [
        ("ix_key_usage_hour", ["hour"])
    ]
    assert schema["window_key"]["constrained_columns"] == ["key_id", "replica", "minute"]
    assert [(ix["name"], ix["column_names"]) for ix in schema["window_indexes"]] == [
        ("ix_rate_windows_minute", ["minute"])
    ]


async def test_upgrade_runs_in_a_thread_from_async_code(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"
    await asyncio.to_thread(upgrade, url)
    assert await asyncio.to_thread(current, url) == head()
