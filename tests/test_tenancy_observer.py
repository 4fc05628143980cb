"""Tickets settled as the scheduler reports their jobs' ends."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from control_plane.serving.fleet import AgentLink, Fleet
from control_plane.serving.jobs import Failed, InferenceJob
from control_plane.serving.scheduler import BufferFull, Scheduler
from control_plane.tenancy import KeyDirectory, Tenancy, TenancyObserver, Ticket
from paddler import protocol
from tests.test_tenancy_support import Clock, caller, chat


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def monotonic() -> Monotonic:
    return Monotonic()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def tenancy(monotonic: Monotonic, registry: CollectorRegistry) -> Tenancy:
    observer = TenancyObserver(clock=monotonic)
    return Tenancy(KeyDirectory("", None), None, registry, Clock(), observer=observer)


def agent(name: str = "a", slots: int = 1) -> AgentLink:
    link = AgentLink(agent_id=name, name=name, pool="smol", model="smol", slots=slots)
    link.reported_state = "ready"
    return link


def admitted_job(tenancy: Tenancy, admitted_at: float = 1000.0) -> tuple[InferenceJob, Ticket]:
    ticket = tenancy.admit(caller(max_concurrent=10), "smol", chat())
    job = InferenceJob(
        pool="smol",
        request=chat(),
        sender=ticket.sender,
        estimated_tokens=ticket.estimated_tokens,
        admitted_at=admitted_at,
    )
    tenancy.register(job, ticket)
    return job, ticket


def settled(registry: CollectorRegistry, outcome: str) -> float | None:
    labels = {"key": "alice", "model": "smol", "outcome": outcome}
    return registry.get_sample_value("paddler_key_requests_total", labels)


def tokens(registry: CollectorRegistry, kind: str) -> float | None:
    return registry.get_sample_value("paddler_key_tokens_total", {"key": "alice", "kind": kind})


def test_finished_settles_with_the_real_usage(
    tenancy: Tenancy, registry: CollectorRegistry
) -> None:
    job, ticket = admitted_job(tenancy)
    job.dispatched_at = 1002.5
    usage = protocol.Usage(prompt_tokens=12, completion_tokens=30)
    done = protocol.Done(job_id=job.id, finish_reason="stop", usage=usage)
    tenancy.observer.job_finished(job, agent(), done)
    assert ticket.settled
    assert tenancy.observer.unsettled == 0
    assert settled(registry, "ok") == 1
    assert (tokens(registry, "prompt"), tokens(registry, "completion")) == (12, 30)


def test_embeddings_settle_with_their_prompt_tokens(
    tenancy: Tenancy, registry: CollectorRegistry
) -> None:
    job, ticket = admitted_job(tenancy)
    embeddings = protocol.Embeddings(job_id=job.id, vectors=((0.5,),), prompt_tokens=9)
    tenancy.observer.job_finished(job, agent(), embeddings)
    assert ticket.settled
    assert tokens(registry, "prompt") == 9


def test_failed_settles_as_an_error(tenancy: Tenancy, registry: CollectorRegistry) -> None:
    job, ticket = admitted_job(tenancy)
    tenancy.observer.job_finished(job, agent(), Failed("agent_lost", "gone"))
    assert ticket.settled and settled(registry, "error") == 1


def test_withdrawn_while_waiting_settles_at_once(
    tenancy: Tenancy, registry: CollectorRegistry
) -> None:
    job, ticket = admitted_job(tenancy)
    tenancy.observer.job_withdrawn(job, "client_gone")
    assert ticket.settled and settled(registry, "withdrawn") == 1


def test_withdrawn_while_running_waits_for_the_agents_answer(
    tenancy: Tenancy, registry: CollectorRegistry
) -> None:
    job, ticket = admitted_job(tenancy)
    job.agent = agent()
    job.withdrawn = True
    tenancy.observer.job_withdrawn(job, "client_gone")
    assert not ticket.settled
    usage = protocol.Usage(prompt_tokens=12, completion_tokens=3)
    done = protocol.Done(job_id=job.id, finish_reason="cancelled", usage=usage)
    tenancy.observer.job_finished(job, job.agent, done)
    assert ticket.settled and settled(registry, "withdrawn") == 1
    assert tokens(registry, "completion") == 3


async def test_withdrawn_from_an_agent_that_is_then_lost_is_settled(
    tenancy: Tenancy, registry: CollectorRegistry
) -> None:
    """The scheduler ends a job being cancelled when its agent goes: its ticket with it."""
    scheduler = Scheduler(Fleet(), max_buffered=1, max_attempts=3, observer=tenancy.observer)
    link = agent()
    scheduler.agent_joined(link)
    job, ticket = admitted_job(tenancy)
    scheduler.submit(job)
    scheduler.withdraw(job, "client_disconnected")
    assert not ticket.settled  # the agent has not confirmed the cancel yet
    scheduler.agent_left(link)
    assert ticket.settled and job.finished and tenancy.observer.unsettled == 0
    assert settled(registry, "error") == 1 and scheduler.queued(job.pool) == 0


def test_rejected_settles_without_tokens(tenancy: Tenancy, registry: CollectorRegistry) -> None:
    job, ticket = admitted_job(tenancy)
    tenancy.observer.job_rejected(job)
    assert ticket.settled and settled(registry, "rejected") == 1


def test_jobs_without_tickets_are_ignored(tenancy: Tenancy) -> None:
    job = InferenceJob(pool="smol", request=chat())
    tenancy.observer.job_rejected(job)
    tenancy.observer.job_withdrawn(job, "client_gone")
    tenancy.observer.job_finished(job, agent(), Failed("agent_lost", "gone"))


async def test_the_real_scheduler_settles_every_end(tenancy: Tenancy) -> None:
    """Through the scheduler's hooks: answered, withdrawn while waiting, turned away."""
    scheduler = Scheduler(Fleet(), max_buffered=1, max_attempts=1, observer=tenancy.observer)
    link = agent()
    scheduler.agent_joined(link)
    running, running_ticket = admitted_job(tenancy)
    waiting, waiting_ticket = admitted_job(tenancy)
    turned_away, turned_away_ticket = admitted_job(tenancy)
    scheduler.submit(running)
    scheduler.submit(waiting)
    with pytest.raises(BufferFull):
        scheduler.submit(turned_away)
    assert turned_away_ticket.settled

    scheduler.withdraw(waiting, "buffer_timeout")
    assert waiting_ticket.settled and not running_ticket.settled

    usage = protocol.Usage(prompt_tokens=5, completion_tokens=6)
    scheduler.agent_message(
        link, protocol.Done(job_id=running.id, finish_reason="stop", usage=usage)
    )
    assert running_ticket.settled
    assert tenancy.in_flight(caller()) == 0
