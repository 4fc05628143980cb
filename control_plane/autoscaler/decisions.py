"""Scaling decisions as a pure function of a pool's snapshot (design §8).

``decide(policy, snapshot)`` reads what the pool looks like now (demand, ready agents, booting
instances, boot failures, the clock) and returns the actions to take, each with the reason a
person would want in the scaling events. It holds no state and does no I/O: the loop that
calls it about once a second owns the timers and applies the actions through a provider.

- demand = busy slots + buffered requests;
  capacity = ready (not draining) agents' slots + slots of instances still booting.
- Scale up when demand exceeds capacity, up to ``max_agents`` machines (booting and draining
  ones count: they cost money), and always up to ``min_agents``.
- Scale down an agent idle for ``scale_down_after`` (longest idle first), down to
  ``min_agents``, only while the capacity left still covers demand: that, and counting booting
  instances as capacity, is what keeps the pool from flapping.
- An instance that has not registered within ``boot_timeout`` is terminated, counted as a
  failed boot and replaced by the scale-up rule. After ``max_boot_failures`` failed boots in a
  row the pool is marked failing (its waiting requests get a 503 ``capacity_unavailable``) and
  launches stop; one probe launch is made every ``failing_retry_after`` seconds. The caller
  sets ``failing_since`` when it marks the pool failing and again on each probe launch, and
  resets it and ``failed_boots`` when an agent registers.
- Instances that end on their own (a crash, any exit, dead while booting or after ready) are
  ``crashes`` in a row. After each, launches wait ``restart_backoff`` seconds, doubled with
  every crash in a row up to ``restart_backoff_max`` (1, 2, 4 … 60 s), so an agent that keeps
  crashing is relaunched slower and slower instead of in a tight loop (``BackOff`` says until
  when and why). An agent that got ready after the last crash and has served for
  ``crashes_forgotten_after`` seconds ends the streak (``ForgetCrashes``). A failing pool's
  probe launches keep their own, longer timer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ScalingPolicy:
    slots_per_agent: int
    min_agents: int = 0
    max_agents: int = 1
    scale_down_after: float = 300.0
    boot_timeout: float = 600.0
    max_boot_failures: int = 3
    failing_retry_after: float = 300.0
    restart_backoff: float = 1.0  # the wait after one crash; doubled with each crash in a row
    restart_backoff_max: float = 60.0
    crashes_forgotten_after: float = 60.0  # serving this long after a crash ends the streak

    def __post_init__(self) -> None:
        if self.slots_per_agent <= 0:
            raise ValueError("slots_per_agent must be greater than 0")
        if not 0 <= self.min_agents <= self.max_agents:
            raise ValueError("need 0 <= min_agents <= max_agents")
        if self.max_boot_failures <= 0:
            raise ValueError("max_boot_failures must be greater than 0")
        if not 0 < self.restart_backoff <= self.restart_backoff_max:
            raise ValueError("need 0 < restart_backoff <= restart_backoff_max")

    def restart_delay(self, crashes: int) -> float:
        """Seconds to wait before launching after ``crashes`` crashes in a row."""
        doublings = min(crashes - 1, 32)  # 2**32 seconds is beyond any cap; no float overflow
        return min(self.restart_backoff * 2.0**doublings, self.restart_backoff_max)


@dataclass(frozen=True)
class AgentView:
    agent_id: str
    busy_slots: int
    total_slots: int
    idle_since: float | None = None  # when its last job ended; None while busy
    draining: bool = False
    managed: bool = (
        True  # started by this pool's provider; others (joined by hand) are never drained
    )
    ready_since: float | None = None  # when it first reported ready


@dataclass(frozen=True)
class BootingInstance:
    provider_id: str
    launched_at: float


@dataclass(frozen=True)
class Crashes:
    """Instances of the pool that ended on their own, in a row."""

    count: int
    last_at: float  # when the latest was seen ending
    last_reason: str  # why it ended: "agent exited: SIGSEGV"


@dataclass(frozen=True)
class ScalingSnapshot:
    now: float
    buffered_requests: int = 0
    agents: tuple[AgentView, ...] = ()
    booting: tuple[BootingInstance, ...] = ()
    failed_boots: int = 0  # boot failures in a row since an agent last registered
    failing_since: float | None = None  # marked failing (or last probed) then; None: not failing
    crashes: Crashes | None = None  # None: no crash since an agent last served a while


@dataclass(frozen=True)
class Launch:
    count: int
    reason: str
    probe: bool = False  # a retry while the pool is failing: the caller restarts its timer


@dataclass(frozen=True)
class DrainAndTerminate:
    agent_id: str
    reason: str


@dataclass(frozen=True)
class ReplaceBooting:
    """Terminate an instance that did not register in time; the launch that replaces it, if
    demand still wants one, is a separate ``Launch`` in the same list."""

    provider_id: str
    reason: str


@dataclass(frozen=True)
class MarkFailing:
    reason: str


@dataclass(frozen=True)
class BackOff:
    """A launch is wanted but waits until ``until``: agents of the pool keep crashing."""

    until: float
    delay: float  # seconds from the latest crash to ``until``
    reason: str


@dataclass(frozen=True)
class ForgetCrashes:
    """An agent has served long enough since the last crash: the next crash waits the least."""

    reason: str


Action = Launch | DrainAndTerminate | ReplaceBooting | MarkFailing | BackOff | ForgetCrashes


def demand(snapshot: ScalingSnapshot) -> int:
    return sum(agent.busy_slots for agent in snapshot.agents) + snapshot.buffered_requests


def decide(policy: ScalingPolicy, snapshot: ScalingSnapshot) -> list[Action]:
    now = snapshot.now
    actions: list[Action] = []
    crashes = snapshot.crashes
    forget = _forget_crashes(policy, snapshot)
    if forget is not None:
        actions.append(forget)
        crashes = None

    timed_out = [b for b in snapshot.booting if now - b.launched_at >= policy.boot_timeout]
    booting = [b for b in snapshot.booting if b not in timed_out]
    for instance in timed_out:
        actions.append(
            ReplaceBooting(
                instance.provider_id,
                f"{instance.provider_id} did not register within "
                f"{policy.boot_timeout:g}s of its launch",
            )
        )
    failed_boots = snapshot.failed_boots + len(timed_out)
    failing = snapshot.failing_since is not None
    if not failing and failed_boots >= policy.max_boot_failures:
        actions.append(
            MarkFailing(f"{failed_boots} instances in a row failed to boot; stopping launches")
        )
        failing = True
        failing_since = now
    else:
        failing_since = snapshot.failing_since if snapshot.failing_since is not None else now

    serving = [agent for agent in snapshot.agents if not agent.draining]
    wanted = demand(snapshot)
    capacity = sum(agent.total_slots for agent in serving) + len(booting) * policy.slots_per_agent
    machines = len(snapshot.agents) + len(booting)

    launch = _launch(policy, wanted, capacity, machines, len(timed_out))
    if launch and failing:
        if booting or now - failing_since < policy.failing_retry_after:
            return actions
        waited = now - failing_since
        launch = Launch(1, f"probe launch: no launch for {waited:g}s while failing", probe=True)
    elif launch and crashes is not None:
        until = crashes.last_at + policy.restart_delay(crashes.count)
        if now < until:
            actions.append(_back_off(policy, crashes, until))
            return actions
    if launch:
        actions.append(launch)
        return actions

    actions += _scale_down(policy, snapshot, serving, wanted, capacity, machines)
    return actions


def _forget_crashes(policy: ScalingPolicy, snapshot: ScalingSnapshot) -> ForgetCrashes | None:
    crashes = snapshot.crashes
    if crashes is None:
        return None
    for agent in snapshot.agents:
        since = agent.ready_since
        if not agent.managed or agent.draining or since is None or since < crashes.last_at:
            continue
        if snapshot.now - since >= policy.crashes_forgotten_after:
            return ForgetCrashes(
                f"{agent.agent_id} has served for {snapshot.now - since:g}s since the last "
                f"crash; the restart backoff starts over"
            )
    return None


def _back_off(policy: ScalingPolicy, crashes: Crashes, until: float) -> BackOff:
    delay = policy.restart_delay(crashes.count)
    plural = "crash" if crashes.count == 1 else "crashes"
    return BackOff(
        until,
        delay,
        f"next launch in {delay:g} s after {crashes.count} {plural}: {crashes.last_reason}",
    )


def _launch(
    policy: ScalingPolicy, wanted: int, capacity: int, machines: int, replacing: int
) -> Launch | None:
    room = policy.max_agents - machines
    below_min = policy.min_agents - machines
    short_slots = wanted - capacity
    needed = max(math.ceil(short_slots / policy.slots_per_agent), below_min, 0)
    count = min(needed, room)
    if count <= 0:
        return None
    if below_min >= count and short_slots <= 0:
        reason = f"{machines} agents, below min_agents {policy.min_agents}"
    else:
        reason = f"demand {wanted} slots exceeds capacity {capacity}"
    if count < needed:
        reason += f"; capped by max_agents {policy.max_agents}"
    if replacing:
        reason += f"; replacing {replacing} instance(s) that failed to boot"
    return Launch(count, reason)


def _scale_down(
    policy: ScalingPolicy,
    snapshot: ScalingSnapshot,
    serving: list[AgentView],
    wanted: int,
    capacity: int,
    machines: int,
) -> list[Action]:
    idle = [
        agent
        for agent in serving
        if agent.managed
        and agent.busy_slots == 0
        and agent.idle_since is not None
        and snapshot.now - agent.idle_since >= policy.scale_down_after
    ]
    idle.sort(key=lambda agent: (agent.idle_since, agent.agent_id))
    actions: list[Action] = []
    for agent in idle:
        if machines - 1 < policy.min_agents or capacity - agent.total_slots < wanted:
            break
        capacity -= agent.total_slots
        machines -= 1
        idle_for = snapshot.now - (agent.idle_since or snapshot.now)
        actions.append(
            DrainAndTerminate(
                agent.agent_id,
                f"idle for {idle_for:g}s (scale_down_after {policy.scale_down_after:g}s); "
                f"{machines} agents left, min_agents {policy.min_agents}",
            )
        )
    return actions
