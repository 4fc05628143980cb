"""Durable control-plane state: models, engine, migrations and the store."""

from control_plane.db.engine import create_engine, default_database_url
from control_plane.db.store import AgentRecord, ConnectionRecord, PoolRecord, Store

__all__ = [
    "AgentRecord",
    "ConnectionRecord",
    "PoolRecord",
    "Store",
    "create_engine",
    "default_database_url",
]
