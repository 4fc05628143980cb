"""An agent's status report, applied to its link."""

from __future__ import annotations

import logging

from control_plane.serving.fleet import AgentLink
from paddler import protocol

logger = logging.getLogger("paddler.scheduler")


def apply_status(link: AgentLink, status: protocol.Status) -> bool:
    """Record what the agent reports; True when this makes it ready (it may take work now)."""
    was = link.state
    if status.issues != link.issues:
        for issue in status.issues:
            logger.warning("agent %s reports: %s", link.name, issue)
    link.applied_version = status.applied_version
    link.model = status.model  # a desired state may change the model and slots
    link.slots = status.slots_total or link.slots
    link.reported_state = status.state
    link.issues = status.issues
    link.engine = status.engine
    link.cpu = status.cpu or link.cpu
    link.download_progress = status.download_progress
    link.prefixes.reported(status.prefixes, link.jobs.keys())
    if link.state != "ready" or was == "ready":
        return False
    logger.info(
        "agent %s is ready with %d slots (%s)",
        link.name,
        link.slots,
        link.cpu.summary if link.cpu else "cpu path not reported",
    )
    return True
