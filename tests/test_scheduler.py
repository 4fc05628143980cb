"""The buffer, balancer and failover rules, on the real scheduler with in-memory agent links."""

from __future__ import annotations

import pytest

from control_plane.serving.balancer import choose_agent
from control_plane.serving.fleet import AgentLink, Fleet
from control_plane.serving.jobs import Failed, InferenceJob, Requeued
from control_plane.serving.observer import SchedulerObserver
from control_plane.serving.scheduler import BufferFull, Scheduler
from paddler import protocol

REQUEST = protocol.GenerationRequest(kind="completion", prompt="hi")
EMBEDDING = protocol.EmbeddingRequest(inputs=("hi",))


def make_scheduler(max_buffered: int = 10, max_attempts: int = 3) -> Scheduler:
    return Scheduler(Fleet(), max_buffered=max_buffered, max_attempts=max_attempts)


def make_agent(
    name: str, slots: int = 1, pool: str = "m", ready: bool = True, embeddings: bool = False
) -> AgentLink:
    link = AgentLink(
        agent_id=name, name=name, pool=pool, model=pool, slots=slots, embeddings=embeddings
    )
    if ready:
        link.reported_state = "ready"
    return link


def sent(link: AgentLink) -> list[protocol.Message]:
    messages = []
    while not link.outbox.empty():
        messages.append(link.outbox.get_nowait())
    return messages


def events(job: InferenceJob) -> list[object]:
    found: list[object] = []
    while not job.events.empty():
        found.append(job.events.get_nowait())
    return found


def done(job_id: str) -> protocol.Done:
    usage = protocol.Usage(prompt_tokens=1, completion_tokens=1)
    return protocol.Done(job_id=job_id, finish_reason="stop", usage=usage)


async def test_free_slot_dispatches_at_once() -> None:
    scheduler = make_scheduler()
    agent = make_agent("a", slots=2)
    scheduler.agent_joined(agent)
    job = InferenceJob(pool="m", request=REQUEST)
    scheduler.submit(job)
    assert job.agent is agent
    [message] = sent(agent)
    assert isinstance(message, protocol.Job) and message.job_id == job.id
    assert job.agent is agent and job.attempts == 1
    assert events(job) == []


class _Recorder(SchedulerObserver):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def job_submitted(self, job: InferenceJob) -> None:
        self.seen.append(f"submitted {job.id}")

    def job_routed(self, job: InferenceJob, link: AgentLink, reason: str) -> None:
        self.seen.append(f"routed {job.id} to {link.name}: {reason}")

    def job_dispatched(self, job: InferenceJob, link: AgentLink) -> None:
        self.seen.append(f"dispatched {job.id} to {link.name}")


async def test_a_job_nobody_waits_before_is_submitted_routed_and_dispatched_in_that_order() -> None:
    recorder = _Recorder()
    scheduler = Scheduler(Fleet(), max_buffered=10, max_attempts=3, observer=recorder)
    agent = make_agent("a", slots=1)
    scheduler.agent_joined(agent)
    first, second = InferenceJob(pool="m", request=REQUEST), InferenceJob(pool="m", request=REQUEST)
    scheduler.submit(first)  # a free slot, nobody waiting: straight to the agent
    scheduler.submit(second)  # no free slot: it waits
    assert recorder.seen == [
        f"submitted {first.id}",
        f"routed {first.id} to a: least_busy",
        f"dispatched {first.id} to a",
        f"submitted {second.id}",
    ]
    assert first.dispatched_at is not None and first.queued_at <= first.dispatched_at
    assert scheduler.position(first) == 0
    assert scheduler.position(second) == 1 and second.waiting


async def test_queue_is_fifo_and_agent_never_oversubscribed() -> None:
    scheduler = make_scheduler()
    agent = make_agent("a", slots=1)
    scheduler.agent_joined(agent)
    jobs = [InferenceJob(pool="m", request=REQUEST) for _ in range(3)]
    for job in jobs:
        scheduler.submit(job)
    assert [job.agent is agent for job in jobs] == [True, False, False]
    assert [scheduler.position(job) for job in jobs] == [0, 1, 2]
    scheduler.agent_message(agent, done(jobs[0].id))
    assert jobs[1].agent is agent and jobs[2].agent is None
    assert len(agent.jobs) == 1
    scheduler.agent_message(agent, done(jobs[1].id))
    assert jobs[2].agent is agent


async def test_overflow_raises_buffer_full_and_keeps_queue() -> None:
    scheduler = make_scheduler(max_buffered=2)
    waiting = [InferenceJob(pool="m", request=REQUEST) for _ in range(2)]
    for job in waiting:
        scheduler.submit(job)
    with pytest.raises(BufferFull):
        scheduler.submit(InferenceJob(pool="m", request=REQUEST))
    assert scheduler.queued("m") == 2
    assert scheduler.counters["rejected_buffer_full"] == 1


async def test_pools_have_separate_buffers() -> None:
    scheduler = make_scheduler(max_buffered=1)
    scheduler.submit(InferenceJob(pool="m", request=REQUEST))
    scheduler.submit(InferenceJob(pool="other", request=REQUEST))
    assert scheduler.queued("m") == scheduler.queued("other") == 1


async def test_withdrawn_waiting_job_leaves_queue() -> None:
    scheduler = make_scheduler()
    first, second = (InferenceJob(pool="m", request=REQUEST) for _ in range(2))
    scheduler.submit(first)
    scheduler.submit(second)
    scheduler.withdraw(first, "client_disconnected")
    assert scheduler.position(second) == 1
    agent = make_agent("a")
    scheduler.agent_joined(agent)
    assert second.agent is agent and first.agent is None


async def test_withdrawn_running_job_is_cancelled_and_holds_slot_until_agent_confirms() -> None:
    scheduler = make_scheduler()
    agent = make_agent("a", slots=1)
    scheduler.agent_joined(agent)
    running, waiting = (InferenceJob(pool="m", request=REQUEST) for _ in range(2))
    scheduler.submit(running)
    scheduler.submit(waiting)
    sent(agent)
    scheduler.withdraw(running, "client_disconnected")
    assert sent(agent) == [protocol.Cancel(job_id=running.id)]
    assert waiting.agent is None, "the slot is free only once the agent confirms"
    scheduler.agent_message(agent, protocol.Token(job_id=running.id, text="late"))
    cancelled = protocol.Done(
        job_id=running.id,
        finish_reason="cancelled",
        usage=protocol.Usage(prompt_tokens=1, completion_tokens=1),
    )
    scheduler.agent_message(agent, cancelled)
    assert waiting.agent is agent
    assert not any(isinstance(event, protocol.Token) for event in events(running))


async def test_agent_lost_before_first_token_requeues_at_head() -> None:
    scheduler = make_scheduler()
    lost = make_agent("lost", slots=1)
    scheduler.agent_joined(lost)
    job, later = (InferenceJob(pool="m", request=REQUEST) for _ in range(2))
    scheduler.submit(job)
    scheduler.submit(later)
    scheduler.agent_left(lost)
    assert job.waiting and scheduler.position(job) == 1 and scheduler.position(later) == 2
    assert isinstance(events(job)[-1], Requeued)
    survivor = make_agent("survivor", slots=1)
    scheduler.agent_joined(survivor)
    assert job.agent is survivor and job.attempts == 2


async def test_agent_lost_after_tokens_fails_job() -> None:
    scheduler = make_scheduler()
    agent = make_agent("a")
    scheduler.agent_joined(agent)
    job = InferenceJob(pool="m", request=REQUEST)
    scheduler.submit(job)
    scheduler.agent_message(agent, protocol.Token(job_id=job.id, text="Hel"))
    scheduler.agent_left(agent)
    assert job.finished
    assert events(job)[-1] == Failed("agent_lost", "agent a was lost while serving the request")


async def test_retries_are_bounded() -> None:
    scheduler = make_scheduler(max_attempts=2)
    job = InferenceJob(pool="m", request=REQUEST)
    scheduler.submit(job)
    for name in ("first", "second"):
        agent = make_agent(name)
        scheduler.agent_joined(agent)
        assert job.agent is agent
        scheduler.agent_left(agent)
    assert job.finished
    assert isinstance(events(job)[-1], Failed)


async def test_agent_that_is_not_ready_gets_no_work() -> None:
    scheduler = make_scheduler()
    agent = make_agent("a", ready=False)
    scheduler.agent_joined(agent)
    job = InferenceJob(pool="m", request=REQUEST)
    scheduler.submit(job)
    assert job.waiting
    scheduler.agent_message(
        agent, protocol.Status(state="ready", slots_busy=0, slots_total=1, model="m")
    )
    assert job.agent is agent


async def test_reconnecting_agent_replaces_its_old_link() -> None:
    scheduler = make_scheduler()
    old = make_agent("a")
    scheduler.agent_joined(old)
    job = InferenceJob(pool="m", request=REQUEST)
    scheduler.submit(job)
    new = make_agent("a")
    scheduler.agent_joined(new)
    assert job.agent is new and list(scheduler.fleet) == [new]
    scheduler.agent_left(old)
    assert list(scheduler.fleet) == [new] and job.agent is new


def test_balancer_prefers_most_free_slots_then_longest_idle() -> None:
    busy = make_agent("busy", slots=4)
    busy.jobs = {str(n): InferenceJob(pool="m", request=REQUEST) for n in range(3)}
    roomy = make_agent("roomy", slots=2)
    assert choose_agent([busy, roomy]) is roomy
    recently_used = make_agent("recent", slots=2)
    recently_used.last_assigned_at = roomy.last_assigned_at + 10
    assert choose_agent([recently_used, roomy]) is roomy
    assert choose_agent([make_agent("loading", ready=False)]) is None


# -- embedding jobs ----------------------------------------------------------------------------


def embeddings(job_id: str) -> protocol.Embeddings:
    return protocol.Embeddings(job_id=job_id, vectors=((1.0, 0.0),), prompt_tokens=2)


def scheduler_with(*agents: AgentLink) -> Scheduler:
    scheduler = make_scheduler()
    for agent in agents:
        scheduler.agent_joined(agent)
    return scheduler


def submit(scheduler: Scheduler, *requests: protocol.JobRequest) -> list[InferenceJob]:
    jobs = [InferenceJob(pool="m", request=request) for request in requests]
    for job in jobs:
        scheduler.submit(job)
    return jobs


async def test_embedding_job_goes_only_to_an_agent_that_serves_embeddings() -> None:
    plain = make_agent("plain", slots=4)
    embedder = make_agent("embedder", slots=1, embeddings=True)
    [job] = submit(scheduler_with(plain, embedder), EMBEDDING)
    assert job.agent is embedder
    [message] = sent(embedder)
    assert isinstance(message, protocol.Job) and message.request == EMBEDDING
    assert sent(plain) == []


async def test_embedding_job_waits_for_an_embeddings_agent_while_generation_goes_ahead() -> None:
    plain = make_agent("plain", slots=2)
    scheduler = scheduler_with(plain)
    embedding_job, generation_job = submit(scheduler, EMBEDDING, REQUEST)
    assert embedding_job.waiting and scheduler.position(embedding_job) == 1
    assert generation_job.agent is plain
    embedder = make_agent("embedder", embeddings=True)
    scheduler.agent_joined(embedder)
    assert embedding_job.agent is embedder


async def test_generation_job_may_use_an_embeddings_agent() -> None:
    embedder = make_agent("embedder", embeddings=True)
    [job] = submit(scheduler_with(embedder), REQUEST)
    assert job.agent is embedder


async def test_freed_embeddings_slot_goes_to_the_oldest_job_that_fits() -> None:
    embedder = make_agent("embedder", embeddings=True)
    scheduler = scheduler_with(embedder)
    first, generation, second = submit(scheduler, EMBEDDING, REQUEST, EMBEDDING)
    assert first.agent is embedder and generation.waiting and second.waiting
    scheduler.agent_message(embedder, embeddings(first.id))
    assert generation.agent is embedder and second.waiting
    assert events(first)[-1] == embeddings(first.id)


async def test_embedding_job_is_requeued_when_its_agent_is_lost() -> None:
    lost = make_agent("lost", embeddings=True)
    scheduler = scheduler_with(lost)
    [job] = submit(scheduler, EMBEDDING)
    scheduler.agent_left(lost)
    assert job.waiting and isinstance(events(job)[-1], Requeued)
    survivor = make_agent("survivor", embeddings=True)
    scheduler.agent_joined(survivor)
    assert job.agent is survivor and job.attempts == 2
    scheduler.agent_message(survivor, embeddings(job.id))
    assert job.finished and scheduler.counters["finished"] == 1


def test_balancer_for_embeddings_skips_agents_without_them() -> None:
    roomy = make_agent("roomy", slots=8)
    embedder = make_agent("embedder", slots=1, embeddings=True)
    assert choose_agent([roomy, embedder]) is roomy
    assert choose_agent([roomy, embedder], embeddings=True) is embedder
    assert choose_agent([roomy], embeddings=True) is None
