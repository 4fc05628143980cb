"""Prefix-aware routing as a pure function: which agent should take a request, and why.

An agent whose slot still holds the KV of a prompt that starts like this request's computes
only the rest, so the request goes where the longest part of its prompt is already cached.
Both sides name prefixes by the hashes of :mod:`paddler.prefix_hashes`; a candidate's
``held`` are the hashes its slots hold as far as the control plane knows. A match is the
deepest link of the request's chain found there, weighed by the characters of prompt it
covers (the control plane has no tokenizer; characters are the proxy for tokens). A request
of a named session (the client's ``user`` or ``X-Session-Id``) also knows the agent that served
that session last: its *pinned* agent, whose slots likely keep the session's KV even where no
hash says so.

The job's *favourite* is the agent with the deepest match; on a tie the pinned one, then the
most free slots, then the one given work longest ago. The rules, in order:

1. No candidate has a free slot: nobody (the job waits for one).
2. A pool whose routing ``mode`` is ``least_busy``: the least busy agent (``least_busy``): most
   free slots, then the one given work longest ago. Prefixes and sessions are not looked at.
3. The favourite is full, and every agent with a free slot holds less of the prompt (or it is
   the pinned agent and no free agent holds any of it): the job goes elsewhere at once
   (``holder_full``) unless the pool's ``affinity_wait`` asks to wait for the favourite, then it
   waits at most that long since it was admitted (``affinity_wait``).
4. The best match among agents with a free slot goes there (``prefix_hit``): a deeper cached
   match wins over the session. With no match, the pinned agent if it has a free slot
   (``session``): the session wins over load. Either way, unless that agent's load (busy
   slots / slots) exceeds the least loaded one's by more than the pool's ``imbalance_bound``:
   then the least busy agent takes it (``imbalance``).
5. No match and no free pinned agent: the least busy agent (``least_busy``, or
   ``holder_full`` after rule 3).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from paddler.prefix_hashes import PrefixLink

__all__ = ["Candidate", "Decision", "Reason", "RoutingPolicy", "route"]

Reason = Literal[
    "prefix_hit", "session", "least_busy", "imbalance", "holder_full", "affinity_wait", "none"
]


@dataclass(frozen=True)
class RoutingPolicy:
    """A pool's routing settings (``routing`` in its desired state)."""

    affinity_wait: float = 0.0  # seconds a job may wait for the agent holding its prefix
    imbalance_bound: float = 0.5  # load share by which the holder may exceed the least loaded
    prefix_aware: bool = True  # False: always the least busy (prefixes are not looked at)


@dataclass(frozen=True)
class Candidate:
    """An agent as the router sees it."""

    name: str
    slots: int
    busy: int
    free_slots: int
    last_assigned_at: float  # time.monotonic(); the smaller, the longer it has been idle
    held: Collection[str] = frozenset()  # prefix hashes its slots hold

    @property
    def load(self) -> float:
        return self.busy / self.slots if self.slots else 1.0


@dataclass(frozen=True)
class Decision:
    agent: Candidate | None  # None: the job waits
    reason: Reason
    match: PrefixLink | None = None  # the deepest link the chosen (or awaited) agent holds
    wait: float = 0.0  # affinity_wait: seconds left to wait for the holder
    pinned: bool = False  # the agent chosen, awaited or passed over is the session's

    def __str__(self) -> str:
        return self.describe()  # so that a log line that is not written never describes it

    def describe(self) -> str:
        """The reason for people, as the log line says it."""
        hit = "" if self.match is None else f"{self.match.depth} links, {self.match.chars} chars"
        holder = f"the holder of {hit}"
        if self.pinned:
            holder = "the session's agent" + (f" (holding {hit})" if hit else "")
        return {
            "prefix_hit": f"prefix hit {hit}",
            "session": "session (the agent that served its last turn)",
            "least_busy": "least busy",
            "imbalance": f"fallback (imbalance; {holder} is too loaded)",
            "holder_full": f"holder full ({holder}): elsewhere at once",
            "affinity_wait": f"waiting up to {self.wait:.2f}s for {holder}",
            "none": "no free slot",
        }[self.reason]


def best_match(chain: Sequence[PrefixLink], held: Collection[str]) -> PrefixLink | None:
    """The deepest link of ``chain`` that ``held`` holds."""
    for link in reversed(chain):
        if link.digest in held:
            return link
    return None


def _least_busy(available: Sequence[Candidate]) -> Candidate:
    return max(available, key=lambda agent: (agent.free_slots, -agent.last_assigned_at))


def route(
    chain: Sequence[PrefixLink],
    candidates: Sequence[Candidate],
    policy: RoutingPolicy = RoutingPolicy(),
    *,
    waited: float = 0.0,
    pinned: str | None = None,
) -> Decision:
    """Where a request whose prefix chain is ``chain`` goes, having waited ``waited`` seconds;
    ``pinned``: the name of the agent that served its session last, if any."""
    available = [agent for agent in candidates if agent.free_slots > 0]
    if not available:
        return Decision(None, "none")
    if not policy.prefix_aware:
        return Decision(_least_busy(available), "least_busy")
    matches = {agent.name: best_match(chain, agent.held) for agent in candidates}

    def covered(agent: Candidate) -> int:
        found = matches[agent.name]
        return 0 if found is None else found.chars

    ranked = sorted(
        candidates,
        key=lambda a: (covered(a), a.name == pinned, a.free_slots, -a.last_assigned_at),
        reverse=True,
    )
    favourite = ranked[0]
    best_free = next(agent for agent in ranked if agent.free_slots > 0)
    on_pinned = favourite.name == pinned
    # what going elsewhere loses: a deeper match, or the session's KV no hash shows
    lost = covered(favourite) > covered(best_free) or (on_pinned and not covered(best_free))
    if favourite.free_slots == 0 and lost:
        waiting_left = policy.affinity_wait - waited
        if waiting_left > 0:
            return Decision(None, "affinity_wait", matches[favourite.name], waiting_left, on_pinned)
        if covered(best_free) == 0 and best_free.name != pinned:
            return Decision(
                _least_busy(available), "holder_full", matches[favourite.name], pinned=on_pinned
            )
    if covered(best_free) == 0 and best_free.name != pinned:
        return Decision(_least_busy(available), "least_busy")
    reason: Reason = "prefix_hit" if covered(best_free) else "session"
    chosen_pinned = best_free.name == pinned
    least_loaded = min(agent.load for agent in available)
    if best_free.load - least_loaded > policy.imbalance_bound:
        return Decision(
            _least_busy(available), "imbalance", matches[best_free.name], pinned=chosen_pinned
        )
    return Decision(best_free, reason, matches[best_free.name], pinned=chosen_pinned)
