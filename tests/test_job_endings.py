"""How jobs end when their agent does not give the whole answer, and admission per kind: the
real scheduler and relay with in-memory agent links (an ``AgentLink`` whose outbox nobody
writes to a socket stands for a connected agent)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from control_plane import errors
from control_plane.serving.jobs import Failed, InferenceJob, Requeued
from control_plane.serving.relay import KeepAlive, Patience, Update, follow
from control_plane.serving.scheduler import BufferFull, Scheduler
from paddler import protocol
from tests.test_scheduler import (
    EMBEDDING,
    REQUEST,
    done,
    events,
    make_agent,
    make_scheduler,
    scheduler_with,
    sent,
    submit,
)


def text_of(update: object) -> str:
    assert isinstance(update, protocol.Token), update
    return update.text


def cancelled(job_id: str, tokens: int = 3) -> protocol.Done:
    """What an agent sends for a job it stopped itself (shutting down past its grace)."""
    usage = protocol.Usage(prompt_tokens=5, completion_tokens=tokens)
    return protocol.Done(job_id=job_id, finish_reason="cancelled", usage=usage)


def status(state: protocol.AgentState, slots: int = 1) -> protocol.Status:
    return protocol.Status(state=state, slots_busy=0, slots_total=slots, model="m")


# -- an agent that stops a job itself ---------------------------------------------------------


async def test_job_an_agent_cut_short_after_tokens_fails_with_shutdown() -> None:
    agent = make_agent("leaving")
    scheduler = scheduler_with(agent)
    [job] = submit(scheduler, REQUEST)
    scheduler.agent_message(agent, protocol.Token(job_id=job.id, text="Once"))
    scheduler.agent_message(agent, status("draining"))
    scheduler.agent_message(agent, cancelled(job.id))
    assert job.finished
    failure = events(job)[-1]
    assert isinstance(failure, Failed) and failure.code == "shutdown"
    assert not any(isinstance(event, protocol.Done) for event in events(job))
    assert scheduler.counters["shutdown"] == 1 and agent.jobs == {}


async def test_job_an_agent_stopped_before_its_first_token_goes_to_another_agent() -> None:
    leaving, other = make_agent("leaving"), make_agent("other")
    scheduler = scheduler_with(leaving)
    [job] = submit(scheduler, REQUEST)
    scheduler.agent_message(leaving, status("draining"))
    scheduler.agent_joined(other)
    scheduler.agent_message(leaving, cancelled(job.id, tokens=0))
    assert not job.finished and job.agent is other and job.attempts == 2
    assert isinstance(events(job)[-1], Requeued)
    assert job.agents_lost_in_prefill == 0, "a shutdown is no crash"


async def test_shutdown_failure_is_a_503_for_the_client() -> None:
    agent = make_agent("leaving")
    scheduler = scheduler_with(agent)
    [job] = submit(scheduler, REQUEST)
    scheduler.agent_message(agent, protocol.Token(job_id=job.id, text="Once"))
    scheduler.agent_message(agent, cancelled(job.id))
    updates = follow(job, scheduler, patience())
    assert text_of(await anext(updates)) == "Once"
    with pytest.raises(errors.OpenAIError) as raised:
        await anext(updates)
    assert raised.value.status == 503 and raised.value.code == "shutdown"


async def test_jobs_of_agents_dropped_at_control_plane_shutdown_say_so() -> None:
    """Started or not, a job whose agent the stopping control plane drops is not requeued
    (no agent takes work any more) and its client hears the control plane is shutting down."""
    agent, other = make_agent("a", slots=2), make_agent("b")
    scheduler = scheduler_with(agent)
    started, prefilling = submit(scheduler, REQUEST, REQUEST)
    scheduler.agent_message(agent, protocol.Token(job_id=started.id, text="Once"))
    scheduler.agent_joined(other)
    scheduler.fleet.hold_all("shutdown")
    scheduler.agent_left(agent)
    failure = events(prefilling)[-1]
    assert isinstance(failure, Failed) and failure.code == "shutdown"
    assert failure.message == "the control plane is shutting down"
    assert scheduler.counters["shutdown"] == 2 and scheduler.counters["requeued"] == 0
    updates = follow(started, scheduler, patience())
    assert text_of(await anext(updates)) == "Once"
    with pytest.raises(errors.OpenAIError) as raised:
        await anext(updates)
    assert raised.value.status == 503 and "control plane is shutting down" in raised.value.message


async def test_withdrawn_job_cancelled_by_its_agent_is_no_failure() -> None:
    agent = make_agent("a")
    scheduler = scheduler_with(agent)
    [job] = submit(scheduler, REQUEST)
    scheduler.withdraw(job, "client_disconnected")
    scheduler.agent_message(agent, cancelled(job.id))
    assert job.finished and events(job) == [] and scheduler.counters["shutdown"] == 0


# -- admission per kind ------------------------------------------------------------------------


async def test_buffer_full_of_embedding_jobs_does_not_turn_chat_away() -> None:
    plain = make_agent("plain", slots=2)
    scheduler = make_scheduler(max_buffered=2)
    scheduler.agent_joined(plain)
    submit(scheduler, EMBEDDING, EMBEDDING)
    with pytest.raises(BufferFull):
        submit(scheduler, EMBEDDING)
    [chat] = submit(scheduler, REQUEST)
    assert chat.agent is plain


async def test_generation_jobs_have_their_own_bound_behind_embedding_jobs() -> None:
    busy = make_agent("busy", slots=1)
    scheduler = make_scheduler(max_buffered=2)
    scheduler.agent_joined(busy)
    submit(scheduler, EMBEDDING, EMBEDDING, REQUEST)  # the generation job takes the slot
    queued = submit(scheduler, REQUEST, REQUEST)
    assert [scheduler.position(job) for job in queued] == [1, 2]
    with pytest.raises(BufferFull):
        submit(scheduler, REQUEST)


# -- an agent that vanishes while prefilling ------------------------------------------------


async def test_job_that_two_agents_vanished_under_fails_with_a_400() -> None:
    scheduler = make_scheduler(max_attempts=5)
    [job] = submit(scheduler, REQUEST)
    first = make_agent("first")
    scheduler.agent_joined(first)
    scheduler.agent_left(first)
    assert job.waiting and job.agents_lost_in_prefill == 1
    second = make_agent("second")
    scheduler.agent_joined(second)
    assert job.agent is second
    scheduler.agent_left(second)
    assert job.finished and not job.waiting
    error = await outcome_error(job, scheduler)
    assert error.status == 400 and error.type == "invalid_request_error"
    assert error.code == "job_crashed_agents"
    third = make_agent("third")
    scheduler.agent_joined(third)
    assert sent(third) == [], "the job never reaches a third agent"


async def test_agent_that_said_goodbye_does_not_make_its_jobs_suspect() -> None:
    scheduler = make_scheduler(max_attempts=5)
    [job] = submit(scheduler, REQUEST)
    for name in ("first", "second"):
        agent = make_agent(name)
        scheduler.agent_joined(agent)
        scheduler.agent_message(agent, protocol.Goodbye(reason="agent shutting down"))
        scheduler.agent_left(agent)
    assert job.waiting and job.agents_lost_in_prefill == 0


async def test_job_that_had_started_is_not_suspect_when_its_agent_vanishes() -> None:
    scheduler = make_scheduler(max_attempts=5)
    [job] = submit(scheduler, REQUEST)
    agent = make_agent("a")
    scheduler.agent_joined(agent)
    scheduler.agent_message(agent, protocol.Token(job_id=job.id, text="x"))
    scheduler.agent_left(agent)
    failure = events(job)[-1]
    assert isinstance(failure, Failed) and failure.code == "agent_lost"


# -- deadlines -----------------------------------------------------------------------------------


async def test_silent_agent_is_given_up_on_and_the_job_goes_elsewhere() -> None:
    stuck, healthy = make_agent("stuck", slots=2), make_agent("healthy")
    scheduler = scheduler_with(stuck, healthy)
    [job] = submit(scheduler, REQUEST)  # the agent with the most free slots
    assert job.agent is stuck
    sent(stuck)
    scheduler.deadline_passed(job, 120.0)
    assert job.agent is healthy and job.attempts == 2
    assert sent(stuck) == [protocol.Cancel(job_id=job.id)]
    assert scheduler.counters["agent_stalled"] == 1
    assert len(stuck.jobs) == 1, "its slot is taken until the agent confirms"
    [later] = submit(scheduler, REQUEST)
    assert later.waiting, "a stalled agent gets no new work"
    scheduler.agent_message(stuck, protocol.Token(job_id=job.id, text="late"))
    assert later.agent is stuck, "it answers again, so it gets work again"
    assert not any(isinstance(event, protocol.Token) for event in events(job))
    scheduler.agent_message(stuck, cancelled(job.id))
    assert stuck.jobs == {later.id: later} and not job.finished
    scheduler.agent_message(healthy, done(job.id))
    assert job.finished and events(job)[-1] == done(job.id)


async def test_job_given_up_on_does_not_go_back_to_an_agent_still_holding_it() -> None:
    stuck, healthy = make_agent("stuck", slots=3), make_agent("healthy")
    scheduler = scheduler_with(stuck, healthy)
    given_up, other, busy = submit(scheduler, REQUEST, REQUEST, REQUEST)
    assert [job.agent for job in (given_up, other, busy)] == [stuck, stuck, healthy]
    scheduler.deadline_passed(given_up, 120.0)
    assert given_up.waiting
    scheduler.agent_message(stuck, protocol.Token(job_id=other.id, text="x"))
    assert given_up.waiting, "the agent has not let go of it yet"
    scheduler.agent_message(stuck, cancelled(given_up.id, tokens=0))
    assert given_up.agent is stuck and given_up.attempts == 2


async def test_silent_agent_of_a_started_job_fails_it_with_agent_timeout() -> None:
    agent = make_agent("a")
    scheduler = scheduler_with(agent)
    [job] = submit(scheduler, REQUEST)
    scheduler.agent_message(agent, protocol.Token(job_id=job.id, text="Once"))
    scheduler.deadline_passed(job, 60.0)
    failure = events(job)[-1]
    assert isinstance(failure, Failed) and failure.code == "agent_timeout"
    assert job.finished and len(agent.jobs) == 1
    scheduler.agent_message(agent, done(job.id))
    assert agent.jobs == {} and events(job) == []


def patience(first_token: float = 60.0, stall: float = 60.0, keepalive: float = 60.0) -> Patience:
    return Patience(
        buffer_timeout=60.0,
        first_token_timeout=first_token,
        stall_timeout=stall,
        report_interval=60.0,
        keepalive_interval=keepalive,
    )


async def outcome_error(job: InferenceJob, scheduler: Scheduler) -> errors.OpenAIError:
    with pytest.raises(errors.OpenAIError) as raised:
        async for _ in follow(job, scheduler, patience()):
            pass
    return raised.value


async def test_follower_keeps_alive_then_moves_a_job_whose_agent_stays_silent() -> None:
    stuck, healthy = make_agent("stuck", slots=2), make_agent("healthy")
    scheduler = scheduler_with(stuck, healthy)
    [job] = submit(scheduler, REQUEST)
    updates: AsyncIterator[Update] = follow(
        job, scheduler, patience(first_token=0.3, keepalive=0.02)
    )
    assert await anext(updates) == KeepAlive()
    while job.agent is stuck:
        assert await anext(updates) == KeepAlive()
    assert job.agent is healthy
    scheduler.agent_message(healthy, protocol.Token(job_id=job.id, text="Hi"))
    scheduler.agent_message(healthy, done(job.id))
    updates_seen = [update async for update in updates]
    assert [type(update).__name__ for update in updates_seen] == ["Token", "Done"]
    assert text_of(updates_seen[0]) == "Hi" and updates_seen[1] == done(job.id)


async def test_follower_fails_a_started_job_whose_agent_stalls() -> None:
    agent = make_agent("a")
    scheduler = scheduler_with(agent)
    [job] = submit(scheduler, REQUEST)
    scheduler.agent_message(agent, protocol.Token(job_id=job.id, text="Once"))
    updates = follow(job, scheduler, patience(stall=0.1, keepalive=0.02))
    assert text_of(await anext(updates)) == "Once"
    with pytest.raises(errors.OpenAIError) as raised:
        while True:
            assert await anext(updates) == KeepAlive()
    assert raised.value.status == 504 and raised.value.code == "agent_timeout"
    assert protocol.Cancel(job_id=job.id) in sent(agent)


async def test_tokens_waiting_behind_a_slow_client_are_no_stall() -> None:
    agent = make_agent("a")
    scheduler = scheduler_with(agent)
    [job] = submit(scheduler, REQUEST)
    sent(agent)
    updates = follow(job, scheduler, patience(stall=0.05, keepalive=0.01))
    scheduler.agent_message(agent, protocol.Token(job_id=job.id, text="Once"))
    assert text_of(await anext(updates)) == "Once"
    scheduler.agent_message(agent, protocol.Token(job_id=job.id, text=" upon"))
    await asyncio.sleep(0.2)  # the client reads nothing meanwhile; the agent was not silent
    assert text_of(await anext(updates)) == " upon"
    assert sent(agent) == [] and scheduler.counters["agent_stalled"] == 0
    scheduler.agent_message(agent, done(job.id))
    assert [update async for update in updates] == [done(job.id)]
