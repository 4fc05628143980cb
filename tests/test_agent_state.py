"""One owner for an agent's state: what the agent reports, plus the control plane's holds.

The scheduler writes only what the agent reported; the rollout, the autoscaler's scale-down
and the control plane's shutdown each hold an agent back and only they release their hold.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from control_plane.serving.desired_state import StoredDesiredState
from control_plane.serving.fleet import AgentLink
from control_plane.serving.jobs import InferenceJob
from control_plane.serving.rollout import Rollout
from control_plane.serving.scheduler import Scheduler
from paddler import protocol
from tests.test_scheduler import REQUEST, make_agent, make_scheduler, sent


def status(state: protocol.AgentState, applied_version: int = 0) -> protocol.Status:
    return protocol.Status(
        state=state, slots_busy=0, slots_total=1, model="m", applied_version=applied_version
    )


def seen(agent: AgentLink) -> tuple[protocol.AgentState, int]:
    """What the fleet sees of ``agent`` now (a call, so each check reads it afresh)."""
    return agent.state, agent.free_slots


def submit(scheduler: Scheduler) -> InferenceJob:
    job = InferenceJob(pool="m", request=REQUEST)
    scheduler.submit(job)
    return job


def test_a_held_agent_is_draining_and_takes_no_work() -> None:
    agent = make_agent("a")
    assert seen(agent) == ("ready", 1)
    agent.hold("scale_down")
    assert seen(agent) == ("draining", 0)
    agent.release("scale_down")
    assert seen(agent) == ("ready", 1)


async def test_a_ready_status_never_undoes_a_hold() -> None:
    scheduler = make_scheduler()
    agent = make_agent("a")
    scheduler.agent_joined(agent)
    agent.hold("scale_down")
    scheduler.agent_message(agent, status("ready"))
    job = submit(scheduler)
    assert agent.state == "draining"
    assert job.waiting and scheduler.position(job) == 1


async def test_an_error_report_shows_through_a_hold() -> None:
    agent = make_agent("a")
    agent.hold("rollout")
    scheduler = make_scheduler()
    scheduler.agent_joined(agent)
    scheduler.agent_message(agent, status("error"))
    assert agent.state == "error"


async def test_each_hold_is_released_by_its_owner_alone() -> None:
    agent = make_agent("a")
    agent.hold("rollout")
    agent.hold("scale_down")
    agent.release("rollout")
    assert seen(agent) == ("draining", 0)
    agent.release("scale_down")
    assert seen(agent) == ("ready", 1)


async def test_a_finished_rollout_releases_its_hold_and_the_waiting_job_goes_out() -> None:
    scheduler = make_scheduler()
    rollout = Rollout(scheduler.fleet, CollectorRegistry(), scheduler.pump)
    agent = make_agent("a")
    scheduler.agent_joined(agent)
    rollout.set("m", StoredDesiredState(model_source="/models/new.gguf", slots=1, version=2))
    [desired] = sent(agent)
    assert isinstance(desired, protocol.DesiredState) and desired.version == 2
    assert agent.holds == {"rollout"}

    job = submit(scheduler)
    # a "ready" sent before the agent read the desired state: still held
    scheduler.agent_message(agent, status("ready", applied_version=0))
    rollout.agent_reported(agent)
    assert agent.state == "draining" and job.waiting

    for state in ("draining", "loading"):
        scheduler.agent_message(agent, status(state))
        rollout.agent_reported(agent)
    scheduler.agent_message(agent, status("ready", applied_version=2))
    rollout.agent_reported(agent)
    assert agent.holds == set() and seen(agent)[0] == "ready"
    assert job.agent is agent
    [message] = sent(agent)
    assert isinstance(message, protocol.Job) and message.job_id == job.id


async def test_a_scale_down_hold_outlives_a_rollout() -> None:
    scheduler = make_scheduler()
    rollout = Rollout(scheduler.fleet, CollectorRegistry(), scheduler.pump)
    agent = make_agent("a")
    scheduler.agent_joined(agent)
    rollout.set("m", StoredDesiredState(model_source="/models/new.gguf", slots=1, version=1))
    agent.hold("scale_down")
    scheduler.agent_message(agent, status("loading"))
    rollout.agent_reported(agent)
    scheduler.agent_message(agent, status("ready", applied_version=1))
    rollout.agent_reported(agent)
    assert agent.holds == {"scale_down"} and agent.state == "draining"
    job = submit(scheduler)
    assert job.waiting


async def test_shutdown_holds_every_agent() -> None:
    scheduler = make_scheduler()
    agents = [make_agent(name) for name in ("a", "b")]
    for agent in agents:
        scheduler.agent_joined(agent)
    scheduler.fleet.hold_all("shutdown")
    assert [agent.state for agent in agents] == ["draining", "draining"]
    assert submit(scheduler).waiting
