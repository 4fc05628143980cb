"""Hand a validated request to the scheduler and follow it: the one way every inference
endpoint (chat, completions, embeddings, responses) submits a job."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable

from control_plane import errors, serving_errors
from control_plane.serving.desired_state import apply_defaults
from control_plane.serving.jobs import InferenceJob
from control_plane.serving.pool_health import all_agents_broken
from control_plane.serving.relay import Patience, Update, Waiting, follow
from control_plane.serving.scheduler import BufferFull, KeyBufferFull
from control_plane.state import ControlPlane
from control_plane.tenancy import Caller, Ticket
from paddler.protocol import GenerationRequest, JobRequest

logger = logging.getLogger("paddler.inference")


def pool_for(state: ControlPlane, model: str) -> str:
    """The pool that serves requests naming ``model``: the pool of that name, else the one
    ``--model-aliases`` maps it to (``*``: any other name). Raises 404 if there is none."""
    if model in state.pools:
        return model
    aliases = state.settings.model_alias_map
    pool = aliases.get(model, aliases.get("*"))
    if pool is None or pool not in state.pools:
        raise errors.model_not_found(model)
    return pool


SESSION_HEADER = "X-Session-Id"


def submit(
    state: ControlPlane,
    model: str,
    job_request: JobRequest,
    *,
    caller: Caller,
    session_header: str | None,
    on_admission: Callable[[Ticket], None],
    user: str | None = None,
    reports: Callable[[Waiting], None] | None = None,
) -> tuple[InferenceJob, AsyncIterator[Update]]:
    """Buffer a job for ``model``'s pool, if ``caller``'s key lets it in now; its updates until
    it is done, failed or timed out. ``session_header`` (the request's ``X-Session-Id``), else
    ``user``, names the conversation, which the router keeps on one agent where it can.

    ``on_admission`` gets the ticket as soon as the key lets the request in: its rate limit
    headers belong on the response even when the buffer then turns the job away.

    ``reports`` takes the job's ``Waiting`` reports instead of its updates (see
    ``relay.follow``)."""
    model = pool_for(state, model)
    failing = state.autoscaling.failing_reason(model)
    if failing is not None and state.fleet.load(model).agents_ready == 0:
        raise serving_errors.capacity_unavailable(failing)
    broken = all_agents_broken(state.fleet.in_pool(model))
    if broken is not None and not _booting(state, model):
        logger.info("refused a request for %s at once: %s", model, broken)
        raise serving_errors.capacity_unavailable(broken)
    desired = state.rollout.desired.get(model)
    if desired is not None and isinstance(job_request, GenerationRequest):
        job_request = apply_defaults(job_request, desired.inference_defaults)
    ticket = state.tenancy.admit(caller, model, job_request)
    session = session_header or user
    job = InferenceJob(
        pool=model,
        request=job_request,
        sender=ticket.sender,
        estimated_tokens=ticket.estimated_tokens,
        # a session is the caller's own: two keys naming theirs alike are not one conversation
        session=None if not session else f"{caller.owner[:16]}/{session}",
    )
    state.tenancy.register(job, ticket)  # the scheduler's observer settles it when the job ends
    on_admission(ticket)
    try:
        state.scheduler.submit(job)
    except KeyBufferFull as full:
        raise serving_errors.key_buffer_full(full.key, _retry_after(state, model)) from full
    except BufferFull as full:
        raise serving_errors.buffer_full(_retry_after(state, model)) from full
    settings = state.settings
    patience = Patience(
        buffer_timeout=settings.buffer_timeout,
        first_token_timeout=settings.first_token_timeout,
        stall_timeout=settings.stall_timeout,
        report_interval=settings.queue_report_interval,
        keepalive_interval=settings.keepalive_interval,
    )
    updates = follow(
        job,
        state.scheduler,
        patience,
        expected_wait=lambda: state.autoscaling.expected_wait(model),
        reports=reports,
    )
    return job, updates


def _booting(state: ControlPlane, pool: str) -> bool:
    """Whether the autoscaler is starting a machine for ``pool``, whose agent may serve."""
    return state.autoscaling.instance_counts().get(pool, {}).get("booting", 0) > 0


def _retry_after(state: ControlPlane, pool: str) -> int:
    """A hint for clients: roughly how long until the queue ahead of them drains."""
    ready = state.fleet.load(pool).agents_ready
    if ready == 0:
        return max(1, math.ceil(state.settings.buffer_timeout / 2))
    return 1 + state.scheduler.queued(pool) // max(1, ready)
