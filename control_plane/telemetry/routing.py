"""How well requests find their cached prompts, per pool, for the dashboard: the routing
decisions by reason, and the share of prompt tokens whose KV an agent reused."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from control_plane.serving.fleet import AgentLink
from control_plane.serving.jobs import InferenceJob
from control_plane.serving.observer import SchedulerObserver
from paddler import protocol

if TYPE_CHECKING:
    from control_plane.serving.observer import JobOutcome


@dataclass
class PoolRouting:
    decisions: Counter[str] = field(default_factory=Counter)
    prompt_tokens: int = 0
    cached_tokens: int = 0

    @property
    def cached_ratio(self) -> float | None:
        """Cached prompt tokens / prompt tokens of answered generations (None: none yet)."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else None

    def as_json(self) -> dict[str, Any]:
        return {
            "decisions": dict(sorted(self.decisions.items())),
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "cached_ratio": self.cached_ratio,
        }


class RoutingTally(SchedulerObserver):
    """Fed by the scheduler's hooks since the control plane started."""

    def __init__(self) -> None:
        self._pools: dict[str, PoolRouting] = {}

    def pool(self, name: str) -> PoolRouting:
        return self._pools.get(name) or PoolRouting()

    def job_routed(self, job: InferenceJob, link: AgentLink, reason: str) -> None:
        self._pools.setdefault(job.pool, PoolRouting()).decisions[reason] += 1

    def job_finished(self, job: InferenceJob, link: AgentLink, outcome: JobOutcome) -> None:
        if isinstance(outcome, protocol.Done):
            tally = self._pools.setdefault(job.pool, PoolRouting())
            tally.prompt_tokens += outcome.usage.prompt_tokens
            tally.cached_tokens += outcome.usage.cached_tokens
