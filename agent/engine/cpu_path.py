"""Which of llama.cpp's CPU code paths a model load may use, decided once for every load.

llama.cpp can move a model's weights into *extra buffer types* at load: AMX tiles on
Sapphire Rapids class CPUs and repacked (interleaved) layouts for AVX2/AVX-512. Repacking
speeds up Q4_0-like weights, but decoding through AMX buffers crashes the process
(ggml-org/llama.cpp#20824, SIGSEGV in ``llama_decode`` with Q4_1 weights). llama.cpp has one
switch for all extra buffer types (``use_extra_bufts``). Keeping repack while skipping AMX
would take per-tensor overrides (``tensor_buft_overrides``), which bypass llama.cpp's check
that a buffer type supports the tensor and crash on tensors repack cannot handle, so that
narrower fix is not safe: on a CPU with AMX, ``auto`` turns them all off.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

from paddler.protocol import CpuPath, CpuRepack

__all__ = ["CPU_REPACK_CHOICES", "CpuFeatures", "CpuRepack", "choose_cpu_path"]

CPU_REPACK_CHOICES: tuple[str, ...] = get_args(CpuRepack)

# the flags (as /proc/cpuinfo spells them) that change which kernels llama.cpp runs
_REPORTED_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
_AMX_FLAGS = frozenset({"amx_tile", "amx_int8", "amx_bf16"})


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU flags that matter to llama.cpp, as this machine's kernel reports them."""

    flags: frozenset[str]

    @classmethod
    def parse(cls, cpuinfo: str) -> CpuFeatures:
        """Read the first processor's ``flags`` (x86) or ``Features`` (Arm) line."""
        for line in cpuinfo.splitlines():
            key, separator, value = line.partition(":")
            if separator and key.strip() in ("flags", "Features"):
                return cls(frozenset(value.split()))
        return cls(frozenset())

    @classmethod
    @functools.cache
    def of_this_machine(cls) -> CpuFeatures:
        try:
            return cls.parse(Path("/proc/cpuinfo").read_text())
        except OSError:  # not Linux: nothing known, so nothing is turned off for it
            return cls(frozenset())

    @property
    def has_amx(self) -> bool:
        return bool(self.flags & _AMX_FLAGS)

    @property
    def reported(self) -> tuple[str, ...]:
        """The flags that matter, in a fixed order."""
        return tuple(flag for flag in _REPORTED_FLAGS if flag in self.flags)


def choose_cpu_path(setting: CpuRepack, features: CpuFeatures | None = None) -> CpuPath:
    """Whether a load may use llama.cpp's extra buffer types, and why.

    ``on`` and ``off`` are the operator's word; ``auto`` keeps them except on CPUs with AMX.
    """
    if setting not in CPU_REPACK_CHOICES:
        raise ValueError(f"cpu_repack must be one of {', '.join(CPU_REPACK_CHOICES)}: {setting!r}")
    features = features if features is not None else CpuFeatures.of_this_machine()
    if setting == "auto":
        extra_buffers = not features.has_amx
        reason = "no amx" if extra_buffers else "amx"
    else:
        extra_buffers = setting == "on"
        reason = "setting"
    return CpuPath(
        features=features.reported,
        cpu_repack=setting,
        extra_buffers=extra_buffers,
        reason=reason,
    )
