"""Admission alone, in this process (no HTTP, no SQL), for bench/admission.py: the
``Authorization`` header looked up, ``Tenancy.admit``, the ticket settled.
"""

from __future__ import annotations

import gc
import time

from prometheus_client import CollectorRegistry

from bench._adm_keys import read_keys
from bench._adm_measure import POOL, TOKENS
from control_plane.tenancy.admission import Tenancy
from control_plane.tenancy.directory import KeyDirectory
from paddler import protocol


async def in_process(url: str, one: str, spread: list[str], calls: int) -> dict[str, float]:
    """Seconds per request of admission alone, in this process (no HTTP, no SQL): the
    ``Authorization`` header looked up, ``Tenancy.admit``, the ticket settled. The best of 3."""
    request = protocol.GenerationRequest(
        kind="chat",
        messages=(protocol.ChatMessage(role="user", content="hi"),),
        sampling=protocol.SamplingParams(max_tokens=TOKENS),
    )
    keyed, _ = await read_keys(url)
    cases = {
        "open": (KeyDirectory("", None), [""]),
        "1 key": (keyed, [f"Bearer {one}"]),
        f"{len(spread):,} keys": (keyed, [f"Bearer {secret}" for secret in spread]),
    }
    seconds: dict[str, float] = {}
    for name, (directory, headers) in cases.items():
        tenancy = Tenancy(directory, None, CollectorRegistry())
        gc.collect()  # not the garbage of the cases before
        best = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            for call in range(calls):
                caller = directory.authenticate(headers[call % len(headers)])
                assert caller is not None
                tenancy.admit(caller, POOL, request).settle(8, TOKENS)
            best = min(best, (time.perf_counter() - began) / calls)
        seconds[name] = best
    return seconds
