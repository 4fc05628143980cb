"""A rollout never waits forever on one agent, never takes an agent the autoscaler is draining,
and a desired state set after a failure is sent (a new version restarts the rollout)."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from control_plane.serving.desired_state import StoredDesiredState
from control_plane.serving.fleet import AgentLink
from control_plane.serving.rollout import SWAP_DEADLINE_SECONDS, Rollout
from control_plane.serving.scheduler import Scheduler
from paddler import protocol
from tests.test_agent_state import status
from tests.test_scheduler import make_agent, make_scheduler, sent


class Clock:
    """Stands for ``time.monotonic``: moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def desired(version: int) -> StoredDesiredState:
    return StoredDesiredState(model_source=f"/models/v{version}.gguf", slots=1, version=version)


def setup(
    *names: str, clock: Clock | None = None, deadline: float = SWAP_DEADLINE_SECONDS
) -> tuple[Scheduler, Rollout, CollectorRegistry, list[AgentLink]]:
    scheduler = make_scheduler()
    registry = CollectorRegistry()
    rollout = Rollout(
        scheduler.fleet,
        registry,
        scheduler.pump,
        swap_deadline=deadline,
        clock=clock or time.monotonic,
    )
    agents = [make_agent(name) for name in names]
    for agent in agents:
        scheduler.agent_joined(agent)
    return scheduler, rollout, registry, agents


def versions_sent(agent: AgentLink) -> list[int]:
    return [
        message.version for message in sent(agent) if isinstance(message, protocol.DesiredState)
    ]


def report(
    scheduler: Scheduler, rollout: Rollout, agent: AgentLink, *states: protocol.AgentState
) -> None:
    """``agent`` sends these statuses; a ``ready`` reports the version sent to it applied."""
    for state in states:
        applied = agent.sent_version if state == "ready" else agent.applied_version
        scheduler.agent_message(agent, status(state, applied))
        rollout.agent_reported(agent)


def swaps(registry: CollectorRegistry, outcome: str) -> float:
    value = registry.get_sample_value(
        "paddler_model_swaps_total", {"pool": "m", "outcome": outcome}
    )
    return value or 0.0


async def test_an_agent_that_never_applies_is_failed_at_the_deadline_and_released() -> None:
    clock = Clock()
    scheduler, rollout, registry, (a, b) = setup("a", "b", clock=clock)
    rollout.set("m", desired(2))
    assert versions_sent(a) == [2] and a.holds == {"rollout"} and versions_sent(b) == []
    report(scheduler, rollout, a, "loading")

    clock.now += SWAP_DEADLINE_SECONDS - 1
    rollout.expire_overdue()
    assert a.holds == {"rollout"} and rollout.agents_swapping("m") == ["a"]

    clock.now += 1
    rollout.expire_overdue()
    assert a.holds == set() and rollout.agents_swapping("m") == []
    assert swaps(registry, "timed_out") == 1
    scheduler.agent_message(a, status("ready", 0))  # it still serves its old model
    rollout.agent_reported(a)
    assert a.state == "ready" and a.free_slots == 1
    rollout.advance("m")
    assert versions_sent(a) == [] and versions_sent(b) == []  # v2 is halted, not retried

    rollout.set("m", desired(3))  # a new version restarts the rollout
    assert versions_sent(a) == [3] and versions_sent(b) == []
    report(scheduler, rollout, a, "loading", "ready")
    assert a.applied_version == 3 and a.holds == set() and versions_sent(b) == [3]


async def test_the_deadline_is_kept_by_a_timer_while_serving() -> None:
    scheduler = make_scheduler()
    released = asyncio.Event()
    rollout = Rollout(
        scheduler.fleet, CollectorRegistry(), lambda pool: released.set(), swap_deadline=0.05
    )
    agent = make_agent("a")
    scheduler.agent_joined(agent)
    rollout.set("m", desired(1))
    assert agent.holds == {"rollout"}
    await asyncio.wait_for(released.wait(), 10)
    assert agent.holds == set() and rollout.agents_swapping("m") == []


async def test_the_rollout_never_picks_an_agent_the_autoscaler_is_draining() -> None:
    scheduler, rollout, _, (a, b) = setup("a", "b")
    a.hold("scale_down")
    rollout.set("m", desired(1))
    assert versions_sent(a) == [] and versions_sent(b) == [1]
    report(scheduler, rollout, b, "loading", "ready")
    assert versions_sent(a) == [] and a.holds == {"scale_down"}
    assert rollout.agents_swapping("m") == []


async def test_a_version_set_while_a_swap_fails_is_sent() -> None:
    scheduler, rollout, registry, (a, b) = setup("a", "b")
    rollout.set("m", desired(1))
    assert versions_sent(a) == [1]
    report(scheduler, rollout, a, "loading")
    rollout.set("m", desired(2))  # while a still downloads v1
    assert versions_sent(a) == [] and versions_sent(b) == []
    report(scheduler, rollout, a, "error")  # v1 fails on a
    assert swaps(registry, "failed") == 1
    assert versions_sent(a) == [2]  # the newer version goes out at once
    report(scheduler, rollout, a, "loading", "ready")
    assert a.applied_version == 2 and versions_sent(b) == [2]


async def test_a_failed_version_stays_halted_until_the_failed_agent_leaves() -> None:
    scheduler, rollout, _, (a, b) = setup("a", "b")
    rollout.set("m", desired(1))
    report(scheduler, rollout, a, "loading", "error")
    rollout.advance("m")
    assert versions_sent(a) == [1] and versions_sent(b) == []
    scheduler.agent_left(a)
    rollout.agent_left(a)
    assert versions_sent(b) == [1]


async def test_a_reconnected_agent_gets_the_swap_its_old_connection_never_finished() -> None:
    clock = Clock()
    scheduler, rollout, registry, (a,) = setup("a", clock=clock)
    rollout.set("m", desired(1))
    assert versions_sent(a) == [1]
    again = make_agent("a")  # the same agent on a new connection, before the old one closed
    scheduler.agent_joined(again)
    rollout.agent_joined(again)
    report(scheduler, rollout, again, "ready")  # the new connection's status ends nothing
    scheduler.agent_left(a)
    rollout.agent_left(a)
    assert versions_sent(again) == [1] and again.holds == {"rollout"}
    clock.now += SWAP_DEADLINE_SECONDS
    rollout.expire_overdue()
    assert again.holds == set() and swaps(registry, "timed_out") == 1
