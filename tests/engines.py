"""Engines loaded for a test module, the way the agent loads them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.engine.engine import Engine


@contextmanager
def loaded_engine(model: Path, *, threads: int = 1, **options: Any) -> Iterator[Engine]:
    """An :class:`Engine` of ``model`` (one thread unless ``options`` say otherwise), loaded,
    and closed afterwards."""
    engine = Engine(model, threads=threads, **options)
    asyncio.run(engine.load())
    try:
        yield engine
    finally:
        engine.close()
