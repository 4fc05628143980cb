"""Each key's requests and tokens over the last minute, as a sliding window.

Counts are kept per key and per minute since the epoch. The count over the last 60 s is
estimated as Cloudflare does: the current minute's count, plus the previous minute's weighted
by the share of it still inside the window (as if its requests had been spread evenly). Two
numbers per key and minute, so it is cheap for any number of keys, and it never lets a burst
at the turn of a minute double the limit, as a fixed window would.

With several replicas, each counts what it admitted itself and adds what the others wrote to
SQL (``UsageStore.others_rate_counts``), which the syncer reads every sync interval (0.5 s).
The others' counts are therefore up to one interval (plus the time of one flush) old: with N
replicas a key can be admitted over its limit by at most what the other N - 1 replicas admitted
for it during one interval. Token counts start as admission estimates and are corrected when
jobs end, so a replica sees another's corrections one interval late as well.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

MINUTE = 60.0
# Slack for the float arithmetic of the weighted count, far below one request or token.
EPSILON = 1e-9
# The least wait reported while a limit is reached, so that "now" never means "not yet".
SHORTEST_WAIT = 0.001


def epoch_minute(now: float) -> int:
    """The minute since the epoch that ``now`` (seconds since the epoch) falls in."""
    return math.floor(now / MINUTE)


@dataclass(frozen=True)
class Window:
    """A key's count of one thing (requests or tokens) in the previous and current minute."""

    previous: int
    current: int
    elapsed: float  # seconds into the current minute

    def count(self) -> float:
        """The estimated count over the last 60 s."""
        return max(0.0, self.previous * (1 - self.elapsed / MINUTE) + self.current)

    def remaining(self, limit: int) -> int:
        return max(0, math.floor(limit - self.count() + EPSILON))

    def seconds_until_room(self, limit: int, cost: int) -> float | None:
        """How long until ``cost`` more fits under ``limit`` if nothing else comes in: 0 if it
        fits now, None if it never can (``cost`` alone is over the limit)."""
        if cost > limit:
            return None
        if self.count() + cost <= limit + EPSILON:
            return 0.0
        previous, current = max(0, self.previous), max(0, self.current)
        if current + cost <= limit:
            # Room comes as the previous minute slides out of the window.
            room = limit - cost - current
            slid_out_at = MINUTE * (1 - room / previous)
            return max(SHORTEST_WAIT, slid_out_at - self.elapsed)
        # Only once the current minute is the previous one and slides out in turn.
        slid_out_at = MINUTE * (1 - (limit - cost) / current)
        return max(SHORTEST_WAIT, MINUTE - self.elapsed + slid_out_at)

    def seconds_until_reset(self) -> float:
        """How long until the window is empty again if nothing else comes in."""
        if self.current > 0:
            return 2 * MINUTE - self.elapsed
        if self.previous > 0:
            return MINUTE - self.elapsed
        return 0.0


class RateWindows:
    """Per-key counts of requests and tokens by minute: this replica's and the others'."""

    def __init__(self) -> None:
        self._own: dict[tuple[int, int], list[int]] = {}  # (key id, minute) -> [requests, tokens]
        self._others: Mapping[tuple[int, int], tuple[int, int]] = {}

    def charge(self, key_id: int, minute: int, requests: int, tokens: int) -> None:
        """Count ``requests`` and ``tokens`` (either may be negative: a correction) for a key in
        ``minute``."""
        counts = self._own.setdefault((key_id, minute), [0, 0])
        counts[0] += requests
        counts[1] += tokens

    def replace_others(self, counts: Mapping[tuple[int, int], tuple[int, int]]) -> None:
        """The other replicas' counts, ``(key id, minute) -> (requests, tokens)``, as last read."""
        self._others = counts

    def requests(self, key_id: int, now: float) -> Window:
        return self._window(key_id, now, 0)

    def tokens(self, key_id: int, now: float) -> Window:
        return self._window(key_id, now, 1)

    def forget_before(self, minute: int) -> None:
        """Drop this replica's counts of minutes before ``minute``; they no longer matter."""
        for stale in [entry for entry in self._own if entry[1] < minute]:
            del self._own[stale]

    def _window(self, key_id: int, now: float, which: int) -> Window:
        minute = epoch_minute(now)
        return Window(
            previous=self._count(key_id, minute - 1, which),
            current=self._count(key_id, minute, which),
            elapsed=now - minute * MINUTE,
        )

    def _count(self, key_id: int, minute: int, which: int) -> int:
        own = self._own.get((key_id, minute))
        others = self._others.get((key_id, minute))
        return (own[which] if own else 0) + (others[which] if others else 0)
