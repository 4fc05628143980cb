"""What an agent's slots hold, as far as the control plane knows: its last report, plus the
requests it was sent since.

An agent reports its slots' prefix hashes (``protocol.SlotPrefixes``) with each status, but
the next turn of a conversation often arrives before the next status does. So the hashes of
every job sent to the agent count as held from the moment it is sent (its slot will keep that
job's KV), until a report supersedes them. A report made before such a job reached the agent
cannot show it, and it arrives while that job still runs (the agent's frames keep their
order), so on a report the hashes of the agent's running jobs are kept and the others
dropped. Bounded: one reported set per slot, and no more sent jobs remembered than it has
slots (the agent evicts the least recently used slot first, as this forgets the oldest).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterator

from paddler.protocol import SlotPrefixes

__all__ = ["HeldPrefixes"]


class HeldPrefixes(Collection[str]):
    """A set of prefix hashes: ``digest in held`` is all the router asks."""

    def __init__(self) -> None:
        self._reported: tuple[frozenset[str], ...] = ()
        self._sent: deque[tuple[str, frozenset[str]]] = deque()  # (job id, hashes), oldest first

    def sent(self, job_id: str, digests: Collection[str], slots: int) -> None:
        """A job whose prefix hashes are ``digests`` went to the agent."""
        if digests:
            self._sent.append((job_id, frozenset(digests)))
        while len(self._sent) > max(1, slots):
            self._sent.popleft()

    def reported(self, report: SlotPrefixes | None, running: Collection[str]) -> None:
        """The agent's report arrived while the jobs ``running`` (ids) were still running."""
        if report is None:
            return
        self._reported = tuple(frozenset(slot) for slot in report.slots)
        self._sent = deque(entry for entry in self._sent if entry[0] in running)

    @property
    def size(self) -> int:
        """Hashes remembered, counting each set (what the bound is about)."""
        return sum(len(held) for held in self._reported) + sum(len(held) for _, held in self._sent)

    def __contains__(self, digest: object) -> bool:
        return any(digest in held for held in self._reported) or any(
            digest in held for _, held in self._sent
        )

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for held in [*self._reported, *(held for _, held in self._sent)]:
            seen |= held
        return iter(seen)

    def __len__(self) -> int:
        return sum(1 for _ in self)
