"""What each slot's KV cache holds, as the control plane can match it without a tokenizer.

A slot keeps the KV of the last request it served, so the request's prefix hashes
(:mod:`paddler.prefix_hashes`, at most ``MAX_LINKS`` of them) name what it holds. They are
recorded when a request takes a slot and dropped when the slot's KV is dropped; the agent
reports them in every status so the control plane can send the next turn of a conversation
to the agent that already holds its start.
"""

from __future__ import annotations

from collections.abc import Iterable

from paddler.prefix_hashes import bounded, prefix_chain
from paddler.protocol import GenerationRequest, SlotPrefixes

__all__ = ["request_digests", "slot_prefixes"]


def request_digests(request: GenerationRequest) -> tuple[str, ...]:
    """The bounded prefix hashes a slot serving ``request`` holds once it has taken it."""
    return tuple(link.digest for link in bounded(prefix_chain(request)))


def slot_prefixes(held: Iterable[tuple[str, ...]]) -> SlotPrefixes:
    """The report of slots' hashes, leaving out slots that hold nothing to match."""
    return SlotPrefixes(slots=tuple(digests for digests in held if digests))
