"""Prefix-aware routing inside the real scheduler: agent links (their outboxes are the queues
the websocket writers drain), status reports and the pool's routing policy."""

from __future__ import annotations

import asyncio

from agent.engine.prefix_summary import request_digests, slot_prefixes
from control_plane.serving.fleet import AgentLink, Fleet
from control_plane.serving.jobs import InferenceJob
from control_plane.serving.prefix_routing import RoutingPolicy
from control_plane.serving.scheduler import Scheduler
from control_plane.telemetry.metrics import ServingMetrics
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
