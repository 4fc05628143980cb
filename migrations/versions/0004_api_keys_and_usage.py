"""API keys with limits, their hourly usage, and per-replica rate windows.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("team", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("models", sa.JSON(), nullable=True),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("tokens_per_minute", sa.Integer(), nullable=True),
        sa.Column("max_concurrent", sa.Integer(), nullable=True),
        sa.Column("max_buffered", sa.Integer(), nullable=True),
        sa.Column("daily_token_budget", sa.Integer(), nullable=True),
        sa.Column("monthly_token_budget", sa.Integer(), nullable=True),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("digest", name=op.f("uq_api_keys_digest")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
    )
    op.create_index(op.f("ix_api_keys_updated_at"), "api_keys", ["updated_at"], unique=False)
    op.create_table(
        "key_usage",
        sa.Column("key_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("queue_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "model", "hour", name=op.f("pk_key_usage")),
    )
    op.create_index(op.f("ix_key_usage_hour"), "key_usage", ["hour"], unique=False)
    op.create_table(
        "rate_windows",
        sa.Column("key_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("replica", sa.String(length=32), nullable=False),
        sa.Column("minute", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "replica", "minute", name=op.f("pk_rate_windows")),
    )
    op.create_index(op.f("ix_rate_windows_minute"), "rate_windows", ["minute"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_rate_windows_minute"), table_name="rate_windows")
    op.drop_table("rate_windows")
    op.drop_index(op.f("ix_key_usage_hour"), table_name="key_usage")
    op.drop_table("key_usage")
    op.drop_index(op.f("ix_api_keys_updated_at"), table_name="api_keys")
    op.drop_table("api_keys")
