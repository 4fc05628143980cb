"""The engine's figures for the agent's status, read from its decoder."""

from __future__ import annotations

import time

from agent.engine.decoder import Decoder
from paddler.protocol import EngineStats

__all__ = ["StatsReader"]


class StatsReader:
    """Reads a decoder's figures; tokens/s is since the previous reading."""

    def __init__(self) -> None:
        self._mark = (time.monotonic(), 0)

    def read(self, decoder: Decoder | None) -> EngineStats:
        if decoder is None:
            return EngineStats()
        counters = decoder.counters
        now = time.monotonic()
        since, generated_then = self._mark
        self._mark = (now, counters.generated_tokens)
        elapsed = now - since
        return EngineStats(
            tokens_per_second=(
                (counters.generated_tokens - generated_then) / elapsed if elapsed > 0 else 0.0
            ),
            active_sequences=decoder.active_sequences,
            kv_cells_used=decoder.kv_cells_used,
            kv_cells_total=decoder.kv_cells_total,
            prompt_cache_hit_rate=(
                counters.cached_tokens / counters.prompt_tokens if counters.prompt_tokens else None
            ),
        )
