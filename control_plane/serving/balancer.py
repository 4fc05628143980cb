"""Which agent gets the next job."""

from __future__ import annotations

from collections.abc import Iterable

from control_plane.serving.fleet import AgentLink


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
