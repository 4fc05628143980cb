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
        """The free slot sharing the longest prefix with ``prompt``; else the least used."""
        if not self._prompt_cache:
            return min(self._free, key=lambda slot: slot.last_used)
        return max(self._free, key=lambda slot: (slot.shared_prefix(prompt), -slot.last_used))

    def occupy(self, slot: SlotCache) -> None:
        self._free.remove(slot)

    def release(self, slot: SlotCache) -> None:
        """Free ``slot``, keeping its KV for a request that starts the same way."""
        self._uses += 1
        slot.last_used = self._uses
        self._free.append(slot)
