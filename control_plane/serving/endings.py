"""How a job that lost its agent's answer ends for its client.

A job that has sent its client no text yet may be tried again on another agent; one that has
must end in an explicit error, never in a finish that passes cut text off as whole. These are
the decisions only; the scheduler carries them out.
"""

from __future__ import annotations

from control_plane.serving.jobs import Failed, InferenceJob

# Failure codes a client may see (see control_plane/errors.py for their statuses).
AGENT_LOST = "agent_lost"
SHUTDOWN = "shutdown"
AGENT_TIMEOUT = "agent_timeout"
JOB_CRASHED_AGENTS = "job_crashed_agents"
CODES = frozenset({AGENT_LOST, SHUTDOWN, AGENT_TIMEOUT, JOB_CRASHED_AGENTS})


def after_agent_lost(
    job: InferenceJob, agent_name: str, *, max_attempts: int, said_goodbye: bool
) -> Failed | None:
    """The agent's connection is gone; None means: try the job again elsewhere.

    An agent that vanished without a goodbye while prefilling the job may have been crashed by
    it (a grammar too deep, say): the first time, the job is tried again, and when it was
    already with an agent that vanished so, it fails instead of crashing another. A job being
    cancelled (its client gone) ends here too: nobody waits for it, but it must end.
    """
    if job.started or job.withdrawn:
        return Failed(AGENT_LOST, f"agent {agent_name} was lost while serving the request")
    if not said_goodbye:
        job.agents_lost_in_prefill += 1
        if job.agents_lost_in_prefill >= 2:
            return Failed(
                JOB_CRASHED_AGENTS,
                f"the request was being prefilled on {job.agents_lost_in_prefill} agents that "
                "were each lost; it is not tried again, as it may be what crashes them",
            )
    if job.attempts >= max_attempts:
        return Failed(AGENT_LOST, f"agent {agent_name} was lost while serving the request")
    return None


def at_control_plane_shutdown(job: InferenceJob) -> Failed:
    """The control plane is stopping and dropped the job's agent with it: no agent will take the
    job again, started or not, and its client is told why."""
    return Failed(SHUTDOWN, "the control plane is shutting down")


def after_agent_stopped(job: InferenceJob, agent_name: str, *, max_attempts: int) -> Failed | None:
    """The agent ended the job itself (it is shutting down past its grace period, or swapping
    its model); None means: try the job again elsewhere."""
    if job.started or job.attempts >= max_attempts:
        return Failed(
            SHUTDOWN,
            f"agent {agent_name} stopped before the request finished (it is shutting down)",
        )
    return None


def after_deadline(
    job: InferenceJob, agent_name: str, waited: float, *, max_attempts: int
) -> Failed | None:
    """The agent sent nothing for the job within its deadline; None means: try it elsewhere."""
    if not job.started and job.attempts < max_attempts:
        return None
    what = "a token" if job.started else "its first token"
    return Failed(
        AGENT_TIMEOUT, f"agent {agent_name} sent no {what} for {waited:.0f}s and was given up"
    )
