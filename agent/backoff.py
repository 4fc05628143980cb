"""Jittered exponential backoff for reconnecting."""

from __future__ import annotations

import random


class Backoff:
    """Delays that double from ``initial`` up to ``maximum``, each drawn at random below its cap.

    The randomness keeps a fleet of agents from redialling a restarted control plane in step.
    """

    def __init__(self, *, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self._rng = rng or random.Random()
        self._cap = initial

    def next_delay(self) -> float:
        delay = self._rng.uniform(self._cap / 2, self._cap)
        self._cap = min(self.maximum, self._cap * 2)
        return delay

    def reset(self) -> None:
        self._cap = self.initial
