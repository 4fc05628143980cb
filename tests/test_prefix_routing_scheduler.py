"""Prefix-aware routing inside the real scheduler: agent links (their outboxes are the queues
the websocket writers drain), status reports and the pool's routing policy."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from agent.engine.prefix_summary import request_digests, slot_prefixes
from control_plane.serving.fleet import AgentLink, Fleet
from control_plane.serving.jobs import InferenceJob, Sender
from control_plane.serving.observer import Observers
from control_plane.serving.prefix_routing import RoutingPolicy
from control_plane.serving.scheduler import Scheduler
from control_plane.serving.sessions import DEFAULT_CAPACITY, SessionMemory
from control_plane.telemetry.metrics import ServingMetrics
from control_plane.telemetry.routing import RoutingTally
from paddler import protocol


def chat(*contents: str) -> protocol.GenerationRequest:
    roles = ("system", "user", "assistant", "user", "assistant", "user")
    return protocol.GenerationRequest(
        kind="chat",
        messages=tuple(
            protocol.ChatMessage(role=role, content=text)
            for role, text in zip(roles, contents, strict=False)
        ),
    )


def ready_agent(name: str, slots: int = 1) -> AgentLink:
    link = AgentLink(agent_id=name, name=name, pool="m", model="m", slots=slots)
    link.reported_state = "ready"
    return link


def finish(scheduler: Scheduler, link: AgentLink, job: InferenceJob) -> None:
    usage = protocol.Usage(prompt_tokens=100, completion_tokens=5, cached_tokens=80)
    scheduler.agent_message(link, protocol.Done(job_id=job.id, finish_reason="stop", usage=usage))


def status(link: AgentLink, *requests: protocol.GenerationRequest) -> protocol.Status:
    return protocol.Status(
        state="ready",
        slots_busy=len(link.jobs),
        slots_total=link.slots,
        model="m",
        prefixes=slot_prefixes(request_digests(request) for request in requests),
    )


def decisions(metrics: ServingMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "paddler_routing_decisions_total", {"pool": "m", "reason": reason}
    )
    return value or 0.0


async def test_follow_ups_go_to_the_agent_that_holds_them_by_memory_then_by_report() -> None:
    metrics = ServingMetrics()
    scheduler = Scheduler(Fleet(), max_buffered=10, max_attempts=3, observer=metrics)
    left, right = ready_agent("left"), ready_agent("right")
    scheduler.agent_joined(left)
    scheduler.agent_joined(right)
    first = InferenceJob(pool="m", request=chat("Be brief.", "Hi"))
    scheduler.submit(first)
    holder = first.agent
    assert isinstance(holder, AgentLink)
    finish(scheduler, holder, first)
    # no report yet: the control plane remembers what it sent
    turn_two = chat("Be brief.", "Hi", "Hello!", "Bye")
    second = InferenceJob(pool="m", request=turn_two)
    scheduler.submit(second)
    assert second.agent is holder
    finish(scheduler, holder, second)
    # the holder's report now says what its slot keeps; the other agent reports another talk
    other = right if holder is left else left
    scheduler.agent_message(holder, status(holder, turn_two))
    scheduler.agent_message(other, status(other, chat("Be brief.", "Other")))
    third = InferenceJob(pool="m", request=chat("Be brief.", "Hi", "Hello!", "Bye", "Bye!", "Wait"))
    scheduler.submit(third)
    assert third.agent is holder
    assert decisions(metrics, "least_busy") == 1 and decisions(metrics, "prefix_hit") == 2
    # a report that no longer holds it: the next turn goes by load
    finish(scheduler, holder, third)
    scheduler.agent_message(holder, status(holder, chat("Something", "else")))
    scheduler.agent_message(other, status(other))
    fourth = InferenceJob(pool="m", request=third.request)
    scheduler.submit(fourth)
    assert decisions(metrics, "least_busy") == 2


async def test_affinity_wait_holds_a_job_for_its_holder_no_longer_than_the_pool_says() -> None:
    scheduler = Scheduler(Fleet(), max_buffered=10, max_attempts=3)
    holder, other = ready_agent("holder"), ready_agent("other")
    scheduler.agent_joined(holder)
    opening = chat("Be brief.", "Hi")
    scheduler.agent_message(holder, status(holder, opening))
    scheduler.router.policies["m"] = RoutingPolicy(affinity_wait=0.3)
    busy = InferenceJob(pool="m", request=opening)
    scheduler.submit(busy)
    assert busy.agent is holder  # the holder is full now
    scheduler.agent_joined(other)
    follow_up = InferenceJob(pool="m", request=chat("Be brief.", "Hi", "Hello!", "More"))
    scheduler.submit(follow_up)
    assert follow_up.agent is None  # waits for the holder although "other" is free
    await asyncio.sleep(0.45)
    assert follow_up.agent is other  # the wait ran out: elsewhere


async def test_without_affinity_wait_a_full_holder_sends_the_job_elsewhere_at_once() -> None:
    scheduler = Scheduler(Fleet(), max_buffered=10, max_attempts=3)
    holder, other = ready_agent("holder"), ready_agent("other")
    scheduler.agent_joined(holder)
    opening = chat("Be brief.", "Hi")
    busy = InferenceJob(pool="m", request=opening)
    scheduler.submit(busy)
    scheduler.agent_joined(other)
    follow_up = InferenceJob(pool="m", request=chat("Be brief.", "Hi", "Hello!", "More"))
    scheduler.submit(follow_up)
    assert follow_up.agent is other


# soft session pinning


def talk(session: str, *contents: str) -> InferenceJob:
    """A turn of ``session`` whose prompt matches nothing held (as when a client rewrote its
    history), so that only the session says where it was served."""
    return InferenceJob(pool="m", request=chat(*contents), session=session)


async def test_a_session_is_pinned_to_its_agent_across_turns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics, tally = ServingMetrics(), RoutingTally()
    scheduler = Scheduler(
        Fleet(), max_buffered=10, max_attempts=3, observer=Observers([metrics, tally])
    )
    left, right = ready_agent("left", slots=2), ready_agent("right", slots=2)
    scheduler.agent_joined(left)
    scheduler.agent_joined(right)
    first = talk("alice", "Summary 1", "Hi")
    scheduler.submit(first)
    pinned = first.agent
    assert isinstance(pinned, AgentLink)
    other = right if pinned is left else left
    finish(scheduler, pinned, first)
    # by load alone, the next turn would go to the other agent (given work longest ago)
    for turn in range(2, 5):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="paddler.scheduler"):
            job = talk("alice", f"Summary {turn}", "Go on")
            scheduler.submit(job)
        assert job.agent is pinned
        assert "session (the agent that served its last turn)" in caplog.text
        finish(scheduler, pinned, job)
    # another client's session of the same name is another session
    stranger = InferenceJob(
        pool="m", request=chat("Mine", "Hi"), session="alice", sender=Sender(key="team-b")
    )
    scheduler.submit(stranger)
    assert stranger.agent is other
    assert decisions(metrics, "session") == 3
    assert tally.pool("m").decisions["session"] == 3


async def test_when_the_sessions_agent_is_full_the_turn_goes_elsewhere_at_once() -> None:
    metrics = ServingMetrics()
    scheduler = Scheduler(Fleet(), max_buffered=10, max_attempts=3, observer=metrics)
    pinned, other = ready_agent("pinned"), ready_agent("other")
    scheduler.agent_joined(pinned)
    first = talk("bob", "Summary 1", "Hi")
    scheduler.submit(first)
    assert first.agent is pinned  # and it is still answering: full
    scheduler.agent_joined(other)
    second = talk("bob", "Summary 2", "Hi again")
    scheduler.submit(second)
    assert second.agent is other
    assert decisions(metrics, "holder_full") == 1
    # the session now lives where its last turn ran
    finish(scheduler, pinned, first)
    finish(scheduler, other, second)
    other.last_assigned_at = time.monotonic()  # by load alone, "pinned" would win the tie
    third = talk("bob", "Summary 3", "Hi once more")
    scheduler.submit(third)
    assert third.agent is other and decisions(metrics, "session") == 1


async def test_session_memory_stays_bounded_after_100k_sessions() -> None:
    now = [0.0]
    scheduler = Scheduler(Fleet(), max_buffered=10, max_attempts=3)
    scheduler.router.sessions = SessionMemory(ttl=600, clock=lambda: now[0])
    left, right = ready_agent("left"), ready_agent("right")
    scheduler.agent_joined(left)
    scheduler.agent_joined(right)
    request = protocol.GenerationRequest(kind="completion", prompt="Hi")  # no prefix to match
    served_by: dict[str, AgentLink] = {}
    for index in range(100_000):
        job = InferenceJob(pool="m", request=request, session=f"user-{index}")
        scheduler.submit(job)
        assert isinstance(job.agent, AgentLink)
        served_by[f"user-{index}"] = job.agent
        job.agent.outbox.get_nowait()  # as its websocket writer would
        finish(scheduler, job.agent, job)
    assert len(scheduler.router.sessions) == DEFAULT_CAPACITY
    # the latest session is still pinned (by load alone: the other agent, idle longer) ...
    latest = InferenceJob(pool="m", request=request, session="user-99999")
    scheduler.submit(latest)
    assert latest.agent is served_by["user-99999"]
    finish(scheduler, served_by["user-99999"], latest)
    # ... the oldest ones are forgotten: user-89999 goes by load, not to the agent that served
    # it (and user-99999: the two agents took turns, 10,000 apart is the same one)
    oldest = InferenceJob(pool="m", request=request, session="user-89999")
    scheduler.submit(oldest)
    assert oldest.agent is not served_by["user-89999"]
    now[0] = 601  # all expired: the pool's memory goes with them
    assert isinstance(oldest.agent, AgentLink)
    finish(scheduler, oldest.agent, oldest)
    scheduler.submit(InferenceJob(pool="m", request=request, session="late"))
    assert len(scheduler.router.sessions) == 1


# affinity_wait does not hold up the queue


async def test_a_job_waiting_for_its_holder_does_not_hold_up_the_jobs_behind_it() -> None:
    scheduler = Scheduler(Fleet(), max_buffered=10, max_attempts=3)
    holder, other = ready_agent("holder"), ready_agent("other", slots=2)
    scheduler.agent_joined(holder)
    scheduler.router.policies["m"] = RoutingPolicy(affinity_wait=30)
    opening = chat("Be brief.", "Hi")
    busy = InferenceJob(pool="m", request=opening)
    scheduler.submit(busy)
    assert busy.agent is holder  # the holder is full now
    scheduler.agent_joined(other)
    follow_up = InferenceJob(pool="m", request=chat("Be brief.", "Hi", "Hello!", "More"))
    scheduler.submit(follow_up)
    assert follow_up.agent is None  # waits for the holder although "other" is free
    behind = [InferenceJob(pool="m", request=chat(f"Question {index}")) for index in range(3)]
    for job in behind:
        scheduler.submit(job)
    # the jobs behind it go to the free agent at once, as far as its slots go
    assert [job.agent for job in behind] == [other, other, None]
    assert scheduler.position(follow_up) == 1 and scheduler.position(behind[2]) == 2
    # the holder frees its slot: the waiting job goes first, there
    finish(scheduler, holder, busy)
    assert follow_up.agent is holder and behind[2].agent is None
    finish(scheduler, other, behind[0])
    assert behind[2].agent is other


async def test_a_job_passed_over_goes_elsewhere_when_its_wait_runs_out() -> None:
    scheduler = Scheduler(Fleet(), max_buffered=10, max_attempts=3)
    holder, other = ready_agent("holder"), ready_agent("other", slots=3)
    scheduler.agent_joined(holder)
    scheduler.router.policies["m"] = RoutingPolicy(affinity_wait=0.3)
    opening = chat("Be brief.", "Hi")
    scheduler.submit(InferenceJob(pool="m", request=opening))
    scheduler.agent_joined(other)
    follow_up = InferenceJob(pool="m", request=chat("Be brief.", "Hi", "Hello!", "More"))
    scheduler.submit(follow_up)
    behind = InferenceJob(pool="m", request=chat("Unrelated"))
    scheduler.submit(behind)
    assert follow_up.agent is None and behind.agent is other
    await asyncio.sleep(0.45)
    assert follow_up.agent is other  # the wait ran out: elsewhere


async def test_embedding_jobs_and_held_jobs_both_let_generation_jobs_go_ahead() -> None:
    scheduler = Scheduler(Fleet(), max_buffered=10, max_attempts=3)
    holder, other = ready_agent("holder"), ready_agent("other")
    scheduler.agent_joined(holder)
    scheduler.router.policies["m"] = RoutingPolicy(affinity_wait=30)
    opening = chat("Be brief.", "Hi")
    scheduler.submit(InferenceJob(pool="m", request=opening))
    scheduler.agent_joined(other)
    embedding = InferenceJob(pool="m", request=protocol.EmbeddingRequest(inputs=("text",)))
    scheduler.submit(embedding)  # no agent here serves embeddings
    follow_up = InferenceJob(pool="m", request=chat("Be brief.", "Hi", "Hello!", "More"))
    scheduler.submit(follow_up)
    behind = InferenceJob(pool="m", request=chat("Unrelated"))
    scheduler.submit(behind)
    assert embedding.agent is None and follow_up.agent is None and behind.agent is other
