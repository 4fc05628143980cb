"""What an agent reports about itself besides its state: its CPU path and engine figures."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

CpuRepack = Literal["auto", "on", "off"]  # may llama.cpp use extra CPU buffer types


class CpuPath(BaseModel):
    """How llama.cpp computes on the agent's CPU: the features that choose its kernels, and
    whether the model's weights may go to extra buffer types (AMX, repacked layouts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: tuple[str, ...] = ()  # of avx2, avx512f, avx512_vnni, avx512_bf16, amx_*
    cpu_repack: CpuRepack = "auto"  # the agent's setting
    extra_buffers: bool = True  # what the setting resolved to on this CPU
    reason: str = ""  # "amx", "no amx" (auto) or "setting"
    model_buffers: tuple[str, ...] = ()  # buffer types the loaded weights got (CPU_REPACK…)

    @property
    def summary(self) -> str:
        """One line for people: ``repack off (amx)``, ``repack on (no amx)``."""
        text = f"repack {'on' if self.extra_buffers else 'off'} ({self.reason})"
        if self.model_buffers:
            text += f"; weights in {', '.join(self.model_buffers)}"
        return text


class EngineStats(BaseModel):
    """What the agent's engine is doing, averaged since the previous status."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens_per_second: float = 0.0  # generated tokens, all sequences together
    active_sequences: int = 0
    kv_cells_used: int = 0
    kv_cells_total: int = 0
    prompt_cache_hit_rate: float | None = None  # reused / all prompt tokens; None before any


MAX_REPORTED_SLOTS = 256  # as many as a pool's agent may have
MAX_SLOT_DIGESTS = 64  # prefix hashes kept per slot (paddler.prefix_hashes)


class SlotPrefixes(BaseModel):
    """What each slot's KV cache starts with, as prefix hashes (``paddler.prefix_hashes``):
    one tuple per slot that holds a previous request's KV, of at most 64 16-hex-digit
    digests. The control plane sends a request where the deepest of its own hashes is held."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slots: tuple[Annotated[tuple[str, ...], Field(max_length=MAX_SLOT_DIGESTS)], ...] = Field(
        (), max_length=MAX_REPORTED_SLOTS
    )
