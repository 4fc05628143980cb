"""Fair shares of a slot across API keys: start-time fair queueing, by tokens.

Each job gets a start tag when it is buffered: the later of the class's virtual time and the
finish tag of its key's previous job; its finish tag is the start plus its estimated tokens
divided by its key's weight. Jobs are served by start tag, so a key that has sent a burst waits
behind the keys that sent little, each key getting slots in proportion to its weight. The
virtual time is the start tag of the job served last: a key that comes back after a pause
starts there, neither owed the time it was away nor charged for it.

A key's finish tag is remembered while it could still matter, that is until the virtual time
passes it; then the key is forgotten, so ten thousand keys that sent once leave nothing behind.
"""

from __future__ import annotations

import heapq


class FairShare:
    """The tags of one priority class of one line of the buffer."""

    def __init__(self) -> None:
        self.virtual_time = 0.0
        self._finish: dict[str, float] = {}  # each key's latest finish tag
        self._waiting: dict[str, int] = {}  # each key's jobs waiting in this class
        self._idle: list[tuple[float, str]] = []  # keys with none waiting, by finish tag
        self._parked: set[str] = set()  # the keys in ``_idle``, each once

    def __len__(self) -> int:
        """How many keys are remembered."""
        return len(self._finish)

    def arrive(self, key: str, cost: float) -> tuple[float, float]:
        """Tag a job of ``key`` that costs ``cost``: its start and finish tags."""
        start = max(self.virtual_time, self._finish.get(key, self.virtual_time))
        finish = start + cost
        self._finish[key] = finish
        self._waiting[key] = self._waiting.get(key, 0) + 1
        return start, finish

    def leave(self, key: str, start: float, finish: float, *, served: bool) -> None:
        """A job of ``key`` tagged ``start``, ``finish`` left: served, or given up on."""
        if served:
            self.virtual_time = max(self.virtual_time, start)
        elif self._finish[key] == finish:  # its newest job never ran: it is not charged for it
            self._finish[key] = start
        left = self._waiting[key] - 1
        if left:
            self._waiting[key] = left
        else:
            del self._waiting[key]
            if key not in self._parked:
                self._park(key)
        while self._idle and self._idle[0][0] <= self.virtual_time:
            _, idle_key = heapq.heappop(self._idle)
            self._parked.discard(idle_key)
            if idle_key in self._waiting:
                continue  # parked again when it has none waiting
            if self._finish[idle_key] <= self.virtual_time:
                del self._finish[idle_key]
            else:
                self._park(idle_key)  # it was served again since: wait for its new finish tag

    def _park(self, key: str) -> None:
        heapq.heappush(self._idle, (self._finish[key], key))
        self._parked.add(key)
