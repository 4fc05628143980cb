"""Scaling decisions: a pure function of the pool's snapshot, tested table by table."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from control_plane.autoscaler.decisions import (
    Action,
    AgentView,
    BackOff,
    BootingInstance,
    Crashes,
    DrainAndTerminate,
    ForgetCrashes,
    Launch,
    MarkFailing,
    ReplaceBooting,
    ScalingPolicy,
    ScalingSnapshot,
    decide,
)

NOW = 10_000.0
POLICY = ScalingPolicy(
    slots_per_agent=4, min_agents=0, max_agents=3, scale_down_after=60, boot_timeout=120
)


def busy(agent_id: str, slots: int = 4, of: int = 4) -> AgentView:
    return AgentView(agent_id, busy_slots=slots, total_slots=of)


def idle(agent_id: str, seconds: float, of: int = 4) -> AgentView:
    return AgentView(agent_id, busy_slots=0, total_slots=of, idle_since=NOW - seconds)


def booting(provider_id: str, seconds: float) -> BootingInstance:
    return BootingInstance(provider_id, launched_at=NOW - seconds)


def kinds(actions: list[Action]) -> list[tuple[str, object]]:
    """Actions without their reasons, for compact expectations."""
    described: list[tuple[str, object]] = []
    for action in actions:
        match action:
            case Launch(count=count):
                described.append(("launch", count))
            case DrainAndTerminate(agent_id=agent_id):
                described.append(("drain", agent_id))
            case ReplaceBooting(provider_id=provider_id):
                described.append(("replace", provider_id))
            case MarkFailing():
                described.append(("failing", None))
            case BackOff(until=until):
                described.append(("backoff", until - NOW))
            case ForgetCrashes():
                described.append(("forget crashes", None))
    return described


def crashes(count: int, seconds_ago: float) -> Crashes:
    return Crashes(count, last_at=NOW - seconds_ago, last_reason="agent exited: SIGSEGV")


def serving(agent_id: str, ready_for: float, *, busy_slots: int = 0) -> AgentView:
    return AgentView(agent_id, busy_slots, 4, idle_since=None, ready_since=NOW - ready_for)


KEEP_ONE = ScalingPolicy(slots_per_agent=4, min_agents=1, max_agents=3)


@dataclass(frozen=True)
class Case:
    name: str
    snapshot: ScalingSnapshot
    expected: list[tuple[str, object]]
    policy: ScalingPolicy = POLICY


CASES = [
    Case("nothing to do at zero", ScalingSnapshot(NOW), []),
    Case(
        "scale up from zero on the first buffered request", ScalingSnapshot(NOW, 1), [("launch", 1)]
    ),
    Case(
        "five waiting requests want two agents of four slots",
        ScalingSnapshot(NOW, 5),
        [("launch", 2)],
    ),
    Case("capped by max_agents", ScalingSnapshot(NOW, 100), [("launch", 3)]),
    Case(
        "at max_agents nothing more is launched",
        ScalingSnapshot(NOW, 9, agents=(busy("a"), busy("b")), booting=(booting("i-1", 5),)),
        [],
    ),
    Case(
        "booting instances count as capacity: no second launch for the same demand",
        ScalingSnapshot(NOW, 3, booting=(booting("i-1", 5),)),
        [],
    ),
    Case(
        "demand beyond ready plus booting launches the difference",
        ScalingSnapshot(NOW, 6, agents=(busy("a"),), booting=(booting("i-1", 5),)),
        [("launch", 1)],
    ),
    Case(
        "a busy pool exactly at capacity stays",
        ScalingSnapshot(NOW, 0, agents=(busy("a"), busy("b"))),
        [],
    ),
    Case(
        "draining agents are not capacity but count toward max_agents",
        ScalingSnapshot(
            NOW,
            2,
            agents=(
                AgentView("a", 0, 4, idle_since=NOW - 500, draining=True),
                busy("b"),
                busy("c"),
            ),
        ),
        [],
    ),
    Case(
        "below min_agents launches up to it",
        ScalingSnapshot(NOW),
        [("launch", 2)],
        ScalingPolicy(slots_per_agent=4, min_agents=2, max_agents=3),
    ),
    Case(
        "idle shorter than scale_down_after stays",
        ScalingSnapshot(NOW, agents=(idle("a", 59),)),
        [],
    ),
    Case(
        "idle for scale_down_after is drained down to zero",
        ScalingSnapshot(NOW, agents=(idle("a", 60),)),
        [("drain", "a")],
    ),
    Case(
        "longest idle goes first, down to min_agents",
        ScalingSnapshot(NOW, agents=(idle("a", 70), idle("b", 400), idle("c", 90))),
        [("drain", "b"), ("drain", "c")],
        ScalingPolicy(slots_per_agent=4, min_agents=1, max_agents=3, scale_down_after=60),
    ),
    Case(
        "min_agents keeps an idle agent",
        ScalingSnapshot(NOW, agents=(idle("a", 400),)),
        [],
        ScalingPolicy(slots_per_agent=4, min_agents=1, max_agents=3, scale_down_after=60),
    ),
    Case(
        "an idle agent stays while requests wait",
        ScalingSnapshot(NOW, 1, agents=(idle("a", 400),)),
        [],
    ),
    Case(
        "an idle agent goes when the others' free slots cover demand",
        ScalingSnapshot(NOW, agents=(busy("a", 2), idle("b", 400))),
        [("drain", "b")],
    ),
    Case(
        "an agent that joined by itself counts as capacity but is never drained",
        ScalingSnapshot(NOW, agents=(AgentView("x", 0, 4, idle_since=NOW - 999, managed=False),)),
        [],
    ),
    Case(
        "a busy agent is never drained",
        ScalingSnapshot(NOW, agents=(AgentView("a", 1, 4, idle_since=NOW - 999),)),
        [],
    ),
    Case(
        "boot timeout: terminate and replace",
        ScalingSnapshot(NOW, 1, booting=(booting("i-1", 120),)),
        [("replace", "i-1"), ("launch", 1)],
    ),
    Case(
        "boot timeout without demand: terminate, nothing to replace",
        ScalingSnapshot(NOW, 0, booting=(booting("i-1", 121),)),
        [("replace", "i-1")],
    ),
    Case(
        "still within boot_timeout: keep waiting",
        ScalingSnapshot(NOW, 1, booting=(booting("i-1", 119),)),
        [],
    ),
    Case(
        "the third failed boot in a row marks the pool failing and stops launches",
        ScalingSnapshot(NOW, 1, booting=(booting("i-3", 130),), failed_boots=2),
        [("replace", "i-3"), ("failing", None)],
    ),
    Case(
        "a failing pool does not launch before failing_retry_after",
        ScalingSnapshot(NOW, 4, failed_boots=3, failing_since=NOW - 299),
        [],
    ),
    Case(
        "a failing pool probes with one launch after failing_retry_after",
        ScalingSnapshot(NOW, 4, failed_boots=3, failing_since=NOW - 300),
        [("launch", 1)],
    ),
    Case(
        "a failing pool waits for its probe instance",
        ScalingSnapshot(
            NOW, 4, booting=(booting("i-4", 10),), failed_boots=3, failing_since=NOW - 900
        ),
        [],
    ),
    Case(
        "a failing pool still scales down idle agents",
        ScalingSnapshot(NOW, agents=(idle("a", 400),), failed_boots=3, failing_since=NOW - 10),
        [("drain", "a")],
    ),
    Case(
        "after a crash the replacement for min_agents waits restart_backoff",
        ScalingSnapshot(NOW, crashes=crashes(1, 0.25)),
        [("backoff", 0.75)],
        KEEP_ONE,
    ),
    Case(
        "once the backoff has passed the replacement is launched",
        ScalingSnapshot(NOW, crashes=crashes(1, 1)),
        [("launch", 1)],
        KEEP_ONE,
    ),
    Case(
        "demand waits too",
        ScalingSnapshot(NOW, 5, crashes=crashes(1, 0)),
        [("backoff", 1)],
    ),
    Case(
        "the wait doubles: 4 s after 3 crashes",
        ScalingSnapshot(NOW, 1, crashes=crashes(3, 3.5)),
        [("backoff", 0.5)],
    ),
    Case(
        "the wait is capped by restart_backoff_max",
        ScalingSnapshot(NOW, 1, crashes=crashes(50, 59)),
        [("backoff", 1)],
    ),
    Case(
        "no launch wanted: nothing to hold back",
        ScalingSnapshot(NOW, crashes=crashes(2, 0)),
        [],
    ),
    Case(
        "a backoff does not stop scaling down",
        ScalingSnapshot(NOW, agents=(idle("a", 400),), crashes=crashes(2, 0)),
        [("drain", "a")],
    ),
    Case(
        "a failing pool's probe keeps its own timer",
        ScalingSnapshot(NOW, 1, failed_boots=3, failing_since=NOW - 300, crashes=crashes(9, 0)),
        [("launch", 1)],
    ),
    Case(
        "an agent ready after the last crash and serving for a minute ends the streak",
        ScalingSnapshot(NOW, 1, agents=(serving("a", 60, busy_slots=4),), crashes=crashes(9, 61)),
        [("forget crashes", None), ("launch", 1)],
    ),
    Case(
        "serving for less than a minute does not",
        ScalingSnapshot(NOW, 1, agents=(serving("a", 45, busy_slots=4),), crashes=crashes(9, 50)),
        [("backoff", 10)],
    ),
    Case(
        "an agent ready since before the last crash proves nothing",
        ScalingSnapshot(NOW, 1, agents=(serving("a", 500, busy_slots=4),), crashes=crashes(9, 30)),
        [("backoff", 30)],
    ),
    Case(
        "neither does an agent that joined by itself",
        ScalingSnapshot(
            NOW,
            1,
            agents=(AgentView("x", 4, 4, managed=False, ready_since=NOW - 120),),
            crashes=crashes(9, 61),
        ),
        [("launch", 1)],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_decisions(case: Case) -> None:
    actions = decide(case.policy, case.snapshot)
    assert kinds(actions) == case.expected
    assert all(action.reason for action in actions)


def test_reasons_say_why() -> None:
    [launch] = decide(POLICY, ScalingSnapshot(NOW, 100))
    assert isinstance(launch, Launch)
    assert launch.reason == "demand 100 slots exceeds capacity 0; capped by max_agents 3"
    [replace, relaunch] = decide(POLICY, ScalingSnapshot(NOW, 1, booting=(booting("i-9", 150),)))
    assert replace.reason == "i-9 did not register within 120s of its launch"
    assert relaunch.reason.endswith("replacing 1 instance(s) that failed to boot")
    [drain] = decide(POLICY, ScalingSnapshot(NOW, agents=(idle("a", 61),)))
    assert drain.reason == "idle for 61s (scale_down_after 60s); 0 agents left, min_agents 0"
    [probe] = decide(POLICY, ScalingSnapshot(NOW, 1, failed_boots=3, failing_since=NOW - 301))
    assert isinstance(probe, Launch) and probe.probe


def test_no_flapping_over_a_simulated_day() -> None:
    """Drive the decisions with a simple pool model: bursts of demand, boots that take 30 s.
    The pool never launches and drains in the same tick, never drains an agent it launched
    less than scale_down_after ago, and never exceeds max_agents."""
    policy = ScalingPolicy(slots_per_agent=2, max_agents=4, scale_down_after=60, boot_timeout=120)
    agents: dict[str, AgentView] = {}
    started: dict[str, float] = {}
    boots: dict[str, float] = {}
    launches = drains = 0
    for tick in range(0, 3600):
        now = float(tick)
        wanted = 7 if 600 <= tick < 900 else (3 if 2000 <= tick < 2100 else 0)
        for provider_id, launched in list(boots.items()):
            if now - launched >= 30:
                del boots[provider_id]
                agents[provider_id] = AgentView(provider_id, 0, 2, idle_since=now)
        # hand the demand to agents, most recently started last
        left = wanted
        for agent_id, agent in sorted(agents.items()):
            take = min(left, agent.total_slots)
            left -= take
            since = agent.idle_since if take == 0 else None
            if take == 0 and since is None:
                since = now
            agents[agent_id] = AgentView(agent_id, take, 2, idle_since=since)
        snapshot = ScalingSnapshot(
            now,
            buffered_requests=left,
            agents=tuple(agents.values()),
            booting=tuple(BootingInstance(p, t) for p, t in boots.items()),
        )
        actions = decide(policy, snapshot)
        assert not (
            any(isinstance(a, Launch) for a in actions)
            and any(isinstance(a, DrainAndTerminate) for a in actions)
        )
        for action in actions:
            if isinstance(action, Launch):
                for n in range(action.count):
                    boots[f"i-{tick}-{n}"] = now
                    started[f"i-{tick}-{n}"] = now
                launches += action.count
            elif isinstance(action, DrainAndTerminate):
                assert now - started[action.agent_id] >= policy.scale_down_after + 30
                del agents[action.agent_id]
                drains += 1
        assert len(agents) + len(boots) <= policy.max_agents
    # two bursts: 4 agents for the first (7 slots), 2 for the second; all gone at the end
    assert (launches, drains) == (6, 6)
    assert not agents and not boots


def test_backoff_reasons_say_how_long_and_why() -> None:
    [backoff] = decide(POLICY, ScalingSnapshot(NOW, 1, crashes=crashes(3, 0)))
    assert backoff == BackOff(
        NOW + 4, 4, "next launch in 4 s after 3 crashes: agent exited: SIGSEGV"
    )
    [first] = decide(POLICY, ScalingSnapshot(NOW, 1, crashes=crashes(1, 0)))
    assert first.reason == "next launch in 1 s after 1 crash: agent exited: SIGSEGV"
    [forget, _] = decide(
        POLICY, ScalingSnapshot(NOW, 9, agents=(serving("a", 70),), crashes=crashes(4, 80))
    )
    assert forget == ForgetCrashes(
        "a has served for 70s since the last crash; the restart backoff starts over"
    )


def test_the_restart_delay_doubles_up_to_its_cap() -> None:
    delays = [POLICY.restart_delay(crashes) for crashes in range(1, 10)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert POLICY.restart_delay(10_000) == 60
    slow = ScalingPolicy(slots_per_agent=1, restart_backoff=5, restart_backoff_max=30)
    assert [slow.restart_delay(n) for n in (1, 2, 3, 4)] == [5, 10, 20, 30]
    with pytest.raises(ValueError, match="restart_backoff"):
        ScalingPolicy(slots_per_agent=1, restart_backoff=0)


def test_an_agent_that_always_crashes_is_relaunched_slower_and_slower() -> None:
    """A simulated hour of ``paddler up`` (min_agents 1) whose agent gets ready and crashes 3 s
    after each launch: the waits between a crash and the next launch double up to the cap,
    instead of a relaunch every tick."""
    policy = ScalingPolicy(slots_per_agent=4, min_agents=1, max_agents=1)
    streak: Crashes | None = None
    running_since: float | None = None
    waits: list[float] = []
    for tick in range(3600):
        now = float(tick)
        if running_since is not None and now - running_since >= 3:
            count = streak.count + 1 if streak is not None else 1
            streak = Crashes(count, now, "agent exited: SIGSEGV")
            running_since = None
        agents = () if running_since is None else (AgentView("a", 0, 4, ready_since=running_since),)
        snapshot = ScalingSnapshot(now, agents=agents, crashes=streak)
        for action in decide(policy, snapshot):
            if isinstance(action, Launch):
                if streak is not None:
                    waits.append(now - streak.last_at)
                running_since = now
            elif isinstance(action, ForgetCrashes):
                streak = None
    assert waits[:8] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert set(waits[6:]) == {60}
    assert len(waits) < 70  # one launch a tick would be ~900
