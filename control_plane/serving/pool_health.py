"""Whether a pool's agents can serve at all: when every one is in ``error`` (its model failed to
fetch or load), a request would only wait out the buffer for a 504, so it is refused at once."""

from __future__ import annotations

from collections.abc import Sequence

from control_plane.serving.fleet import AgentLink


def all_agents_broken(links: Sequence[AgentLink]) -> str | None:
    """Why none of ``links`` can serve, from their issues, if all are in ``error``; None if
    there is none or one of them is (or may become) ready."""
    if not links or any(link.state != "error" for link in links):
        return None
    issues = [
        f"agent {link.name}: {'; '.join(link.issues) or 'in error'}"
        for link in sorted(links, key=lambda link: link.name)
    ]
    return "every agent of this model is in error (" + "; ".join(issues) + ")"
