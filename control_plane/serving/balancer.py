"""Which agent gets the next job.

Embedding jobs, and the "is any slot free" question, go by load alone (:func:`choose_agent`).
Generation jobs go by prefix: :class:`Router` asks :func:`prefix_routing.route` where the
longest part of the prompt is already cached (or, without a match, which agent served the
job's session last), remembers that the chosen agent will hold this prompt next and serves
this session, and makes the decision visible (a log line with its reason, the observer's
``job_routed`` hook for metrics and the dashboard).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Literal, NamedTuple

from control_plane.serving.fleet import AgentLink
from control_plane.serving.jobs import InferenceJob
from control_plane.serving.observer import SchedulerObserver
from control_plane.serving.prefix_routing import Candidate, Decision, RoutingPolicy, route
from control_plane.serving.sessions import SessionMemory
from paddler.prefix_hashes import PrefixLink, bounded, prefix_chain
from paddler.protocol import GenerationRequest

__all__ = ["NotNow", "Routed", "Router", "choose_agent"]

# why a job was not sent: no agent it may go to has a free slot (the jobs behind it wait too),
# or it waits for the one agent it has affinity with (the jobs behind it may go ahead)
NotNow = Literal["no_free_slot", "affinity_wait"]


class Routed(NamedTuple):
    """Where a job goes, and why (None: an embedding job, which goes to the least busy)."""

    link: AgentLink
    decision: Decision | None


logger = logging.getLogger("paddler.scheduler")


def choose_agent(candidates: Iterable[AgentLink], *, embeddings: bool = False) -> AgentLink | None:
    """The ready agent with the most free slots; ties go to the one given work longest ago.

    ``embeddings``: only agents that serve embeddings qualify.
    """
    available = [
        link for link in candidates if link.free_slots > 0 and (link.embeddings or not embeddings)
    ]
    if not available:
        return None
    return max(available, key=lambda link: (link.free_slots, -link.last_assigned_at))


class Router:
    """Chooses each job's agent; ``policies`` holds each pool's routing settings, ``sessions``
    the agent that served each session last."""

    def __init__(self, observer: SchedulerObserver, sessions: SessionMemory | None = None) -> None:
        self.policies: dict[str, RoutingPolicy] = {}
        self.sessions = SessionMemory() if sessions is None else sessions
        self._observer = observer
        self._chains: weakref.WeakKeyDictionary[InferenceJob, list[PrefixLink]] = (
            weakref.WeakKeyDictionary()
        )
        self._waking: weakref.WeakSet[InferenceJob] = weakref.WeakSet()

    def route(
        self, job: InferenceJob, links: Sequence[AgentLink], wake: Callable[[str], None]
    ) -> Routed | NotNow:
        """The agent ``job`` goes to now (it is sent there at once), or why not: no free slot,
        or it waits for the agent it has affinity with (``affinity_wait``), and then
        ``wake(pool)`` is called when it may go elsewhere."""
        if not isinstance(job.request, GenerationRequest):
            found = choose_agent(links, embeddings=job.wants_embeddings)
            return "no_free_slot" if found is None else Routed(found, None)
        chain = self._chains.get(job)
        if chain is None:
            chain = self._chains[job] = prefix_chain(job.request)
        ready = [link for link in links if link.state == "ready"]  # a draining one holds none
        by_name = {link.agent_id: link for link in ready}
        candidates = [_candidate(link) for link in ready]
        policy = self.policies.get(job.pool, RoutingPolicy())
        session = _session_key(job)
        pinned = None if session is None else self.sessions.agent_of(job.pool, session)
        waited = time.monotonic() - job.admitted_at
        decision = route(chain, candidates, policy, waited=waited, pinned=pinned)
        if decision.reason == "affinity_wait":
            self._wake_later(job, decision, wake)
            return "affinity_wait"
        if decision.agent is None:
            return "no_free_slot"
        link = by_name[decision.agent.name]
        link.prefixes.sent(job.id, [found.digest for found in bounded(chain)], link.slots)
        if session is not None:
            self.sessions.served(job.pool, session, link.agent_id)
        self._chains.pop(job, None)
        self._observer.job_routed(job, link, decision.reason)
        return Routed(link, decision)  # the dispatch's log line says why

    def _wake_later(self, job: InferenceJob, held: Decision, wake: Callable[[str], None]) -> None:
        if job in self._waking:
            return
        self._waking.add(job)
        logger.info(
            "job %s is %s; jobs behind it may go ahead",
            job.id,
            held,
            extra=job.log_extra,
        )
        with contextlib.suppress(RuntimeError):  # no loop (a sync caller): the next pump decides
            asyncio.get_running_loop().call_later(held.wait, wake, job.pool)


def _candidate(link: AgentLink) -> Candidate:
    return Candidate(
        name=link.agent_id,
        slots=link.slots,
        busy=len(link.jobs),
        free_slots=link.free_slots,
        last_assigned_at=link.last_assigned_at,
        held=link.prefixes,
    )


def _session_key(job: InferenceJob) -> Hashable | None:
    """The key ``job``'s session is remembered by: sessions are named by clients, so two API
    keys' sessions of the same name are not the same session."""
    return None if job.session is None else (job.sender.key, job.session)
