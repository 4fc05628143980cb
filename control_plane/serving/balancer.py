"""Which agent gets the next job.

Embedding jobs, and the "is any slot free" question, go by load alone (:func:`choose_agent`).
Generation jobs go by prefix: :class:`Router` asks :func:`prefix_routing.route` where the
longest part of the prompt is already cached, remembers that the chosen agent will hold this
prompt next, and makes the decision visible (a log line with its reason, the observer's
``job_routed`` hook for metrics and the dashboard).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Sequence

from control_plane.serving.fleet import AgentLink
from control_plane.serving.jobs import InferenceJob
from control_plane.serving.observer import SchedulerObserver
from control_plane.serving.prefix_routing import Candidate, RoutingPolicy, route
from paddler.prefix_hashes import PrefixLink, bounded, prefix_chain
from paddler.protocol import GenerationRequest

__all__ = ["Router", "choose_agent"]

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
    """Chooses each job's agent; ``policies`` holds each pool's routing settings."""

    def __init__(self, observer: SchedulerObserver) -> None:
        self.policies: dict[str, RoutingPolicy] = {}
        self._observer = observer
        self._chains: weakref.WeakKeyDictionary[InferenceJob, list[PrefixLink]] = (
            weakref.WeakKeyDictionary()
        )
        self._waking: weakref.WeakSet[InferenceJob] = weakref.WeakSet()

    def route(
        self, job: InferenceJob, links: Sequence[AgentLink], wake: Callable[[str], None]
    ) -> AgentLink | None:
        """The agent ``job`` goes to now (it is sent there at once), or None: no free slot, or
        it waits for the agent holding its prefix (``affinity_wait``; the pool's queue keeps
        its order behind it), and ``wake(pool)`` is called when it may go elsewhere."""
        if not isinstance(job.request, GenerationRequest):
            return choose_agent(links, embeddings=job.wants_embeddings)
        chain = self._chains.get(job)
        if chain is None:
            chain = self._chains[job] = prefix_chain(job.request)
        ready = [link for link in links if link.state == "ready"]  # a draining one holds none
        by_name = {link.agent_id: link for link in ready}
        candidates = [_candidate(link) for link in ready]
        policy = self.policies.get(job.pool, RoutingPolicy())
        decision = route(chain, candidates, policy, waited=time.monotonic() - job.admitted_at)
        if decision.reason == "affinity_wait":
            self._wake_later(job, decision.wait, wake)
            return None
        if decision.agent is None:
            return None
        link = by_name[decision.agent.name]
        link.prefixes.sent(job.id, [found.digest for found in bounded(chain)], link.slots)
        self._chains.pop(job, None)
        logger.info(
            "routing job %s to agent %s: %s",
            job.id,
            link.name,
            decision.describe(),
            extra=job.log_extra,
        )
        self._observer.job_routed(job, link, decision.reason)
        return link

    def _wake_later(self, job: InferenceJob, delay: float, wake: Callable[[str], None]) -> None:
        if job in self._waking:
            return
        self._waking.add(job)
        logger.info(
            "job %s waits up to %.2fs for the agent holding its prefix (affinity_wait)",
            job.id,
            delay,
            extra=job.log_extra,
        )
        with contextlib.suppress(RuntimeError):  # no loop (a sync caller): the next pump decides
            asyncio.get_running_loop().call_later(delay, wake, job.pool)


def _candidate(link: AgentLink) -> Candidate:
    return Candidate(
        name=link.agent_id,
        slots=link.slots,
        busy=len(link.jobs),
        free_slots=link.free_slots,
        last_assigned_at=link.last_assigned_at,
        held=link.prefixes,
    )
