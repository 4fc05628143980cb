"""SQL databases for tests: a throwaway PostgreSQL server for the whole session and the
``database_url`` fixture that runs a test on SQLite and on PostgreSQL. Registered as a pytest
plugin in conftest.py, so every test module shares the one server."""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from control_plane.db import migrate
from tests.processes import free_port


class PostgresServer:
    """A throwaway PostgreSQL cluster on a random loopback port, trusting local connections."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.data_dir = Path(tempfile.mkdtemp(prefix="paddler-pg-"))
        self.port = free_port()
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
