"""The context's sequence ids as slots: the KV each keeps between requests, and which is free."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["SlotCache", "SlotPool"]


@dataclass(eq=False)
class SlotCache:
    """The tokens whose KV one sequence id holds; kept after a request for the next one."""

    seq_id: int
    tokens: list[int] = field(default_factory=list)
    last_used: int = 0
    # the prefix hashes of the request whose KV this is (agent/engine/prefix_summary.py)
    prefixes: tuple[str, ...] = ()

    @property
    def held_prefixes(self) -> tuple[str, ...]:
        """The prefix hashes of what the slot holds: none once its KV is dropped."""
        return self.prefixes if self.tokens else ()

    def shared_prefix(self, prompt: list[int]) -> int:
        """How many leading tokens of ``prompt`` are already cached here."""
        count = 0
        for cached, token in zip(self.tokens, prompt, strict=False):
            if cached != token:
                break
            count += 1
        return count


class SlotPool:
    """One slot per sequence id; a request takes the free one that suits its prompt best."""

    def __init__(self, count: int, *, prompt_cache: bool) -> None:
        self._slots = [SlotCache(seq_id) for seq_id in range(count)]
        self._free = list(self._slots)
        self._prompt_cache = prompt_cache
        self._uses = 0

    def __getitem__(self, seq_id: int) -> SlotCache:
        return self._slots[seq_id]

    @property
    def cells_used(self) -> int:
        return sum(len(slot.tokens) for slot in self._slots)

    def any_free(self) -> bool:
        return bool(self._free)

    def idle_cached(self) -> list[SlotCache]:
        """The free slots still holding a previous request's KV."""
        return [slot for slot in self._free if slot.tokens]

    def pick(self, prompt: list[int]) -> SlotCache:
        """The free slot sharing the longest prefix with ``prompt`` if reusing it keeps at
        least half of what it holds; else an empty slot; else the least recently used.

        A slot whose KV ``prompt`` only grazes (a chat template's opening, a common first
        sentence) is left alone: taking it would evict a conversation that may come back,
        while another slot can take this prompt at about the same cost.
        """
        if self._prompt_cache:
            shared = [(slot.shared_prefix(prompt), slot) for slot in self._free if slot.tokens]
            worth = [(n, slot) for n, slot in shared if n and 2 * n >= len(slot.tokens)]
            if worth:
                return max(worth, key=lambda pair: (pair[0], -pair[1].last_used))[1]
        return min(self._free, key=lambda slot: (bool(slot.tokens), slot.last_used))

    def held_prefixes(self) -> list[tuple[str, ...]]:
        """Each slot's prefix hashes (read from other threads: each read is one attribute)."""
        return [slot.held_prefixes for slot in self._slots]

    def occupy(self, slot: SlotCache, prefixes: tuple[str, ...] = ()) -> None:
        """``slot`` serves a request now; its KV will be that request's (``prefixes``)."""
        self._free.remove(slot)
        slot.prefixes = prefixes

    def release(self, slot: SlotCache) -> None:
        """Free ``slot``, keeping its KV for a request that starts the same way."""
        self._uses += 1
        slot.last_used = self._uses
        self._free.append(slot)
