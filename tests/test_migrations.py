"""The Alembic migrations, on SQLite and (when its binaries are installed) PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

from control_plane.db.migrate import current, downgrade, head, upgrade
from control_plane.db.models import Base
from tests.sql_databases import run_sync

INITIAL_TABLES = {"pools", "agents", "agent_connections"}
AUTOSCALER_TABLES = INITIAL_TABLES | {"instances", "scaling_events"}
TABLES = AUTOSCALER_TABLES | {"responses", "api_keys", "key_usage", "rate_windows"}


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
