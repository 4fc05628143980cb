"""The SQL schema, as SQLAlchemy declarative models.

Alembic owns the real schema (``migrations/``); these models must match it exactly, which
``tests/test_migrations.py`` checks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so migrations can refer to them (SQLite batch operations
# need named constraints to drop or alter them).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamp with time zone``; SQLite has no time zones, so the value is
    stored as naive UTC and made aware again when read. Naive datetimes are refused.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: use a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Pool(Base):
    """A group of agents serving one model."""

    __tablename__ = "pools"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    model_source: Mapped[str] = mapped_column(Text)
    slots_per_agent: Mapped[int] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now, onupdate=utc_now)


class Agent(Base):
    """An agent the control plane has seen, keyed by the id the agent chose for itself.

    Deleting a pool deletes its agents and their connection history (``ON DELETE CASCADE``):
    an agent row only describes membership of a pool, and an agent that connects again
    re-registers itself.
    """

    __tablename__ = "agents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    pool_name: Mapped[str] = mapped_column(
        String(200), ForeignKey("pools.name", ondelete="CASCADE"), index=True
    )
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    last_state: Mapped[str] = mapped_column(String(32))
    connected: Mapped[bool] = mapped_column(Boolean)


class AgentConnection(Base):
    """One websocket session of an agent, open while ``disconnected_at`` is null."""

    __tablename__ = "agent_connections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    connected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    remote_address: Mapped[str | None] = mapped_column(String(255))
    disconnect_reason: Mapped[str | None] = mapped_column(Text)


class Instance(Base):
    """A machine (or local process) a provider started for a pool, and its cold start.

    ``state`` is ``booting`` until its agent reports the model loaded, then ``ready``,
    ``draining`` while it is being scaled down, and ``terminated`` for good (``reason`` says
    why). The timestamps are the cold-start breakdown: the launch call, the provider reporting
    it running, the agent's hello, the model loaded and the first token it produced.
    """

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_id: Mapped[str] = mapped_column(String(128), unique=True)
    pool: Mapped[str] = mapped_column(String(200), index=True)
    state: Mapped[str] = mapped_column(String(32))
    launched_at: Mapped[datetime] = mapped_column(UTCDateTime)
    running_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    model_loaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_token_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    terminated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)


class ScalingEvent(Base):
    """One thing the autoscaler did to a pool, with the machine count before and after."""

    __tablename__ = "scaling_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime)
    pool: Mapped[str] = mapped_column(String(200), index=True)
    action: Mapped[str] = mapped_column(String(32))
    from_count: Mapped[int] = mapped_column(Integer)
    to_count: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)


class StoredResponse(Base):
    """A ``/v1/responses`` answer kept for ``previous_response_id`` and ``GET``, until
    ``expires_at``. ``owner`` is the hex SHA-256 digest of the API key that made it ("" when the
    API is open); ``conversation`` holds the chat messages that led to it plus its answer,
    ``input_items`` the items its request gave, ``body`` the response object as served."""

    __tablename__ = "responses"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    conversation: Mapped[list[Any]] = mapped_column(JSON)
    input_items: Mapped[list[Any]] = mapped_column(JSON)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)


class ApiKey(Base):
    """An API key, kept as the hex SHA-256 digest of its secret and the secret's visible
    ``prefix``. Null limits mean unlimited and null ``models`` every model. Replicas poll for
    keys changed since their last look by ``updated_at``, hence its index."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    team: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    models: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer)
    max_concurrent: Mapped[int | None] = mapped_column(Integer)
    max_buffered: Mapped[int | None] = mapped_column(Integer)
    daily_token_budget: Mapped[int | None] = mapped_column(Integer)
    monthly_token_budget: Mapped[int | None] = mapped_column(Integer)
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class KeyUsage(Base):
    """What one key did with one model in one UTC hour (``hour`` is its start).

    ``key_id`` 0 stands for the bootstrap keys and the open API. It is no foreign key, so that
    usage outlives the keys it counts.
    """

    __tablename__ = "key_usage"

    key_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, index=True)
    requests: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    queue_seconds: Mapped[float] = mapped_column(Float)


class RateWindow(Base):
    """Requests and tokens one replica admitted for one key in one minute (minutes since the
    epoch), so that every replica can count the others against the per-minute limits. Only the
    last few minutes are kept."""

    __tablename__ = "rate_windows"

    key_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    replica: Mapped[str] = mapped_column(String(32), primary_key=True)
    minute: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False, index=True)
    requests: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[int] = mapped_column(Integer)
