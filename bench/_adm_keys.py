"""The API keys of bench/admission.py: made in a state database in bulk, with limits that never
refuse, and read back into a KeyDirectory as a control plane does at start.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from control_plane.db.engine import create_engine
from control_plane.db.key_store import KeyStore
from control_plane.db.migrate import upgrade
from control_plane.db.models import utc_now
from control_plane.tenancy.directory import KeyDirectory
from control_plane.tenancy.secrets import new_secret, secret_digest, visible_prefix

# high enough never to refuse, low enough for a 32-bit column
NEVER_REFUSING = {
    "requests_per_minute": 1_000_000_000,
    "tokens_per_minute": 2_000_000_000,
    "daily_token_budget": 2_000_000_000,
}


def make_keys(url: str, count: int) -> tuple[list[str], float]:
    """``count`` keys in the state database at ``url`` (migrated first), made a minute ago;
    their secrets and the seconds it took."""
    began = time.perf_counter()
    upgrade(url)
    secrets = [new_secret() for _ in range(count)]
    rows = [
        (f"bench-{number:05d}", visible_prefix(secret), secret_digest(secret), NEVER_REFUSING)
        for number, secret in enumerate(secrets)
    ]

    async def insert() -> None:
        engine = create_engine(url)
        try:
            store = KeyStore(engine, clock=lambda: utc_now() - timedelta(minutes=1))
            await store.bulk_create(rows)
        finally:
            await engine.dispose()

    asyncio.run(insert())
    return secrets, time.perf_counter() - began


async def read_keys(url: str) -> tuple[KeyDirectory, float]:
    """A KeyDirectory holding every key of the state database at ``url``, and the seconds it
    took to read them, as a control plane does at start."""
    engine = create_engine(url)
    try:
        directory = KeyDirectory("", KeyStore(engine))
        began = time.perf_counter()
        await directory.refresh()
        return directory, time.perf_counter() - began
    finally:
        await engine.dispose()
