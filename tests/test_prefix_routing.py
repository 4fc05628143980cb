"""Prefix-aware routing without processes: the shared hashes, the pure routing rules, and what
the control plane remembers each agent holds."""

from __future__ import annotations

import tracemalloc

import pytest
from pydantic import ValidationError

from agent.engine.prefix_summary import request_digests, slot_prefixes
from agent.engine.slots import SlotPool
from control_plane.serving.desired_state import PoolSpec, RoutingSettings
from control_plane.serving.held_prefixes import HeldPrefixes
from control_plane.serving.prefix_routing import Candidate, RoutingPolicy, route
from control_plane.serving.sessions import SessionMemory
from paddler.prefix_hashes import BLOCK_CHARS, HEAD_LINKS, MAX_LINKS, bounded, prefix_chain
from paddler.protocol import (
    ChatMessage,
    FunctionTool,
    GenerationRequest,
    SlotPrefixes,
    Status,
    ToolCall,
    decode_agent_message,
    encode,
)


def conversation(*contents: str, tools: tuple[FunctionTool, ...] = ()) -> GenerationRequest:
    roles = ("user", "assistant")
    messages = tuple(
        ChatMessage(role=roles[index % 2], content=text) for index, text in enumerate(contents)
    )
    return GenerationRequest(kind="chat", messages=messages, tools=tools)


SYSTEM = ChatMessage(role="system", content="You are terse.")


# the hashes both sides compute


def test_a_follow_up_turn_extends_the_chain_of_the_first() -> None:
    first = prefix_chain(conversation("Hi", "Hello!", "What is 2+2?"))
    second = prefix_chain(conversation("Hi", "Hello!", "What is 2+2?", "4.", "And 3+3?"))
    assert [link.digest for link in second[:3]] == [link.digest for link in first]
    assert [link.depth for link in second] == [1, 2, 3, 4, 5]
    assert second[-1].chars == len("HiHello!What is 2+2?4.And 3+3?")
    assert len({link.digest for link in second}) == 5


@pytest.mark.parametrize(
    "other",
    [
        conversation("Hi", "Hello?", "What is 2+2?"),  # an earlier message differs
        conversation("Hi", "Hello!", "What is 2+2?", tools=(FunctionTool(name="add"),)),
        GenerationRequest(kind="chat", messages=(SYSTEM, *conversation("Hi").messages)),
        GenerationRequest(
            kind="chat",
            messages=(
                ChatMessage(role="user", content="Hi"),
                ChatMessage(
                    role="assistant",
                    content="Hello!",
                    tool_calls=(ToolCall(id="c1", name="add", arguments="{}"),),
                ),
                ChatMessage(role="user", content="What is 2+2?"),
            ),
        ),
    ],
)
def test_anything_that_changes_the_prompt_before_a_message_changes_its_hash(
    other: GenerationRequest,
) -> None:
    mine = prefix_chain(conversation("Hi", "Hello!", "What is 2+2?"))
    assert prefix_chain(other)[-1].digest != mine[-1].digest


def test_completions_hash_whole_blocks_of_characters() -> None:
    text = "x" * (3 * BLOCK_CHARS + 10)
    chain = prefix_chain(GenerationRequest(kind="completion", prompt=text))
    assert [link.chars for link in chain] == [BLOCK_CHARS, 2 * BLOCK_CHARS, 3 * BLOCK_CHARS]
    longer = prefix_chain(GenerationRequest(kind="completion", prompt=text + "y" * BLOCK_CHARS))
    assert [link.digest for link in longer[:3]] == [link.digest for link in chain]
    short = GenerationRequest(kind="completion", prompt="x" * (BLOCK_CHARS - 1))
    assert prefix_chain(short) == []
    chat_like = prefix_chain(conversation("x" * BLOCK_CHARS))
    assert chat_like[0].digest != chain[0].digest


def test_a_long_chain_keeps_its_head_and_its_deepest_links() -> None:
    chain = prefix_chain(conversation(*(f"message {index}" for index in range(200))))
    kept = bounded(chain)
    assert len(kept) == MAX_LINKS
    assert [link.depth for link in kept[:HEAD_LINKS]] == list(range(1, HEAD_LINKS + 1))
    assert kept[-1].depth == 200
    assert kept[HEAD_LINKS].depth == 200 - (MAX_LINKS - HEAD_LINKS) + 1
    assert bounded(chain[:10]) == tuple(chain[:10])


def test_the_slot_report_crosses_the_wire_and_refuses_unbounded_slots() -> None:
    report = slot_prefixes([request_digests(conversation("Hi", "Hello!")), ()])
    assert len(report.slots) == 1  # the empty slot holds nothing to match
    status = Status(state="ready", slots_busy=0, slots_total=2, model="m", prefixes=report)
    assert decode_agent_message(encode(status)) == status
    with pytest.raises(ValidationError):
        SlotPrefixes(slots=(tuple(f"{index:016x}" for index in range(MAX_LINKS + 1)),))


# the agent's slots


def test_a_slot_reports_the_request_whose_kv_it_keeps_until_the_kv_is_dropped() -> None:
    pool = SlotPool(2, prompt_cache=True)
    first = request_digests(conversation("Hi"))
    slot = pool.pick([1, 2, 3])
    pool.occupy(slot, first)
    slot.tokens.extend([1, 2, 3])
    pool.release(slot)
    assert pool.held_prefixes() == [first, ()]
    second = request_digests(conversation("Hi", "Hello!", "Bye"))
    again = pool.pick([1, 2, 3, 4])
    assert again is slot  # the slot sharing the prefix takes the follow-up
    pool.occupy(again, second)
    assert pool.held_prefixes() == [second, ()]
    slot.tokens.clear()  # its KV dropped (the decoder's _forget)
    assert pool.held_prefixes() == [(), ()]


def test_a_prompt_that_only_grazes_a_slots_kv_takes_another_slot() -> None:
    pool = SlotPool(3, prompt_cache=True)
    for seq_id, tokens in ((0, [1, 2, 3, 4, 5, 6]), (1, [1, 2, 7, 8])):  # 0 used first
        pool.occupy(pool[seq_id])
        pool[seq_id].tokens.extend(tokens)
        pool.release(pool[seq_id])
    # [1, 2] of slot 0's six tokens: evicting it would keep a third; slot 1 keeps half
    assert pool.pick([1, 2, 9, 9]).seq_id == 1
    assert pool.pick([1, 2, 3, 9]).seq_id == 0  # half of slot 0 is worth reusing
    assert pool.pick([5, 5]).seq_id == 2  # nothing shared: the empty slot, not the LRU one
    pool.occupy(pool[2])
    assert pool.pick([5, 5]).seq_id == 0  # no empty one: the least recently used


# the routing rules


def agent(
    name: str,
    *,
    free: int = 1,
    busy: int = 0,
    slots: int = 2,
    held: tuple[str, ...] = (),
    idle_since: float = 0.0,
) -> Candidate:
    return Candidate(name, slots, busy, free, idle_since, frozenset(held))


CHAIN = prefix_chain(conversation("Hi", "Hello!", "What is 2+2?", "4.", "And 3+3?"))
TURN_ONE = tuple(link.digest for link in CHAIN[:3])
FIRST_MESSAGE = (CHAIN[0].digest,)


@pytest.mark.parametrize(
    ("agents", "policy", "waited", "chosen", "reason", "depth"),
    [
        # nobody holds anything: the most free slots, then idle longest
        (
            [agent("a", free=1, busy=1), agent("b", free=2)],
            RoutingPolicy(),
            0,
            "b",
            "least_busy",
            None,
        ),
        (
            [agent("a", idle_since=5), agent("b", idle_since=3)],
            RoutingPolicy(),
            0,
            "b",
            "least_busy",
            None,
        ),
        # the agent that served the first turn takes the second
        ([agent("a", free=2), agent("b", held=TURN_ONE)], RoutingPolicy(), 0, "b", "prefix_hit", 3),
        # the deeper match wins over a shared first message
        (
            [agent("a", held=FIRST_MESSAGE), agent("b", held=TURN_ONE)],
            RoutingPolicy(),
            0,
            "b",
            "prefix_hit",
            3,
        ),
        # the holder is full: elsewhere at once, to the best remaining match or the least busy
        (
            [agent("a", free=0, busy=2, held=TURN_ONE), agent("b", held=FIRST_MESSAGE)],
            RoutingPolicy(),
            0,
            "b",
            "prefix_hit",
            1,
        ),
        (
            [agent("a", free=0, busy=2, held=TURN_ONE), agent("b"), agent("c", free=2)],
            RoutingPolicy(),
            0,
            "c",
            "holder_full",
            3,
        ),
        # ... unless the pool asks to wait for it, and only as long as it says
        (
            [agent("a", free=0, busy=2, held=TURN_ONE), agent("b")],
            RoutingPolicy(affinity_wait=0.5),
            0.1,
            None,
            "affinity_wait",
            3,
        ),
        (
            [agent("a", free=0, busy=2, held=TURN_ONE), agent("b")],
            RoutingPolicy(affinity_wait=0.5),
            0.6,
            "b",
            "holder_full",
            3,
        ),
        # the holder is too loaded compared with the least loaded agent
        (
            [agent("a", slots=4, busy=3, held=TURN_ONE), agent("b", slots=4, free=4)],
            RoutingPolicy(),
            0,
            "b",
            "imbalance",
            3,
        ),
        (
            [agent("a", slots=4, busy=3, held=TURN_ONE), agent("b", slots=4, free=4)],
            RoutingPolicy(imbalance_bound=1),
            0,
            "a",
            "prefix_hit",
            3,
        ),
        (
            [agent("a", busy=1, held=TURN_ONE), agent("b", free=2)],
            RoutingPolicy(),
            0,
            "a",
            "prefix_hit",
            3,
        ),
        # a pool routing by load alone
        (
            [agent("a", held=TURN_ONE), agent("b", free=2)],
            RoutingPolicy(prefix_aware=False),
            0,
            "b",
            "least_busy",
            None,
        ),
        # no free slot anywhere: the job waits
        (
            [agent("a", free=0, held=TURN_ONE), agent("b", free=0)],
            RoutingPolicy(),
            0,
            None,
            "none",
            None,
        ),
        ([], RoutingPolicy(), 0, None, "none", None),
    ],
)
def test_routing_rules(
    agents: list[Candidate],
    policy: RoutingPolicy,
    waited: float,
    chosen: str | None,
    reason: str,
    depth: int | None,
) -> None:
    decision = route(CHAIN, agents, policy, waited=waited)
    assert (decision.agent.name if decision.agent else None) == chosen
    assert decision.reason == reason
    assert (decision.match.depth if decision.match else None) == depth
    assert decision.describe()
    if reason == "affinity_wait":
        assert decision.wait == pytest.approx(policy.affinity_wait - waited)


def test_a_request_without_a_chain_goes_to_the_least_busy() -> None:
    decision = route([], [agent("a", held=TURN_ONE), agent("b", free=2)])
    assert decision.agent is not None and decision.agent.name == "b"
    assert decision.reason == "least_busy"


@pytest.mark.parametrize(
    ("agents", "policy", "waited", "chosen", "reason", "pinned"),
    [
        # no match anywhere: the session's agent, although another is less busy
        ([agent("a", busy=1), agent("b", free=2)], RoutingPolicy(), 0, "a", "session", True),
        # a deeper cached match elsewhere wins over the session
        (
            [agent("a", held=FIRST_MESSAGE), agent("b", held=TURN_ONE)],
            RoutingPolicy(),
            0,
            "b",
            "prefix_hit",
            False,
        ),
        # an equal match: the session's agent breaks the tie
        (
            [agent("a", held=TURN_ONE), agent("b", free=2, held=TURN_ONE)],
            RoutingPolicy(),
            0,
            "a",
            "prefix_hit",
            True,
        ),
        # the session's agent is full: elsewhere at once, to the least busy ...
        (
            [agent("a", free=0, busy=2), agent("b"), agent("c", free=2)],
            RoutingPolicy(),
            0,
            "c",
            "holder_full",
            True,
        ),
        # ... or to a free agent holding part of the prompt, even with affinity_wait
        (
            [agent("a", free=0, busy=2), agent("b", held=FIRST_MESSAGE)],
            RoutingPolicy(affinity_wait=0.5),
            0,
            "b",
            "prefix_hit",
            False,
        ),
        (
            [agent("a", free=0, busy=2, held=TURN_ONE), agent("b", held=TURN_ONE)],
            RoutingPolicy(affinity_wait=0.5),
            0,
            "b",
            "prefix_hit",
            False,
        ),
        # ... unless the pool asks to wait for it, and only as long as it says
        (
            [agent("a", free=0, busy=2), agent("b")],
            RoutingPolicy(affinity_wait=0.5),
            0.1,
            None,
            "affinity_wait",
            True,
        ),
        (
            [agent("a", free=0, busy=2), agent("b")],
            RoutingPolicy(affinity_wait=0.5),
            0.6,
            "b",
            "holder_full",
            True,
        ),
        # a full holder of a deeper match: waited for if the pool says so, else the session
        (
            [agent("a"), agent("b", free=0, busy=2, held=TURN_ONE)],
            RoutingPolicy(affinity_wait=0.5),
            0.1,
            None,
            "affinity_wait",
            False,
        ),
        (
            [agent("a"), agent("b", free=0, busy=2, held=TURN_ONE), agent("c", free=2)],
            RoutingPolicy(),
            0,
            "a",
            "session",
            True,
        ),
        # the session's agent is too loaded compared with the least loaded agent
        (
            [agent("a", slots=4, busy=3), agent("b", slots=4, free=4)],
            RoutingPolicy(),
            0,
            "b",
            "imbalance",
            True,
        ),
        (
            [agent("a", slots=4, busy=3), agent("b", slots=4, free=4)],
            RoutingPolicy(imbalance_bound=1),
            0,
            "a",
            "session",
            True,
        ),
        # a pool routing by load alone does not pin sessions
        (
            [agent("a", busy=1), agent("b", free=2)],
            RoutingPolicy(prefix_aware=False),
            0,
            "b",
            "least_busy",
            False,
        ),
        # no free slot anywhere: the job waits
        ([agent("a", free=0), agent("b", free=0)], RoutingPolicy(), 0, None, "none", False),
    ],
)
def test_session_rules(
    agents: list[Candidate],
    policy: RoutingPolicy,
    waited: float,
    chosen: str | None,
    reason: str,
    pinned: bool,
) -> None:
    """The session ``s`` was served last by agent ``a``."""
    decision = route(CHAIN, agents, policy, waited=waited, pinned="a")
    assert (decision.agent.name if decision.agent else None) == chosen
    assert decision.reason == reason
    assert decision.pinned == pinned
    assert decision.describe()


def test_a_session_whose_agent_is_gone_goes_by_load() -> None:
    decision = route(CHAIN, [agent("a"), agent("b", free=2)], pinned="gone")
    assert decision.agent is not None and decision.agent.name == "b"
    assert decision.reason == "least_busy"


def test_the_log_says_why_a_session_went_where_it_did() -> None:
    full = [agent("a", free=0, busy=2, held=FIRST_MESSAGE), agent("b")]
    waiting = route(CHAIN, full, RoutingPolicy(affinity_wait=1), pinned="a")
    assert waiting.describe() == (
        f"waiting up to 1.00s for the session's agent (holding 1 links, {CHAIN[0].chars} chars)"
    )
    assert route(CHAIN, full, pinned="a").describe().startswith("holder full (the session's")
    alone = route(CHAIN, [agent("a")], pinned="a")
    assert alone.describe() == "session (the agent that served its last turn)"


# which agent served each session last


def test_session_memory_forgets_the_least_recently_served_beyond_its_capacity() -> None:
    sessions = SessionMemory(capacity=3)
    for index in range(5):
        sessions.served("m", f"s{index}", f"agent-{index}")
    sessions.served("m", "s2", "agent-9")  # served again: the most recent
    sessions.served("m", "s5", "agent-5")
    assert [sessions.agent_of("m", f"s{index}") for index in range(6)] == [
        None,
        None,
        "agent-9",
        None,
        "agent-4",
        "agent-5",
    ]
    assert sessions.agent_of("other pool", "s2") is None
    assert len(sessions) == 3


def test_session_memory_expires_and_gives_its_memory_back() -> None:
    now = [0.0]
    sessions = SessionMemory(capacity=20_000, ttl=60, clock=lambda: now[0])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(10_000):
            sessions.served("m", f"s{index}", "a")
            sessions.served("n", f"s{index}", "b")
        filled = tracemalloc.get_traced_memory()[0] - before
        now[0] = 30
        sessions.served("m", "late", "c")  # served after the others: outlives them
        now[0] = 61
        assert sessions.agent_of("m", "s1") is None and sessions.agent_of("m", "late") == "c"
        assert len(sessions) == 1  # pool "n", not looked at, was swept all the same
        left = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert left < filled / 20
    now[0] = 100
    assert sessions.agent_of("m", "late") is None and len(sessions) == 0


# what the control plane remembers an agent holds


def test_held_prefixes_count_sent_jobs_until_a_report_supersedes_them() -> None:
    held = HeldPrefixes()
    held.sent("job-1", TURN_ONE, slots=2)
    assert TURN_ONE[2] in held  # before any report: the job just sent counts
    held.sent("job-2", FIRST_MESSAGE, slots=2)
    held.sent("job-3", ("feedfacefeedface",), slots=2)
    assert TURN_ONE[2] not in held  # no more sent jobs than slots are remembered
    # a report made before job-3 reached the agent: job-3 (still running) is kept
    held.reported(SlotPrefixes(slots=(("0123456789abcdef",),)), running={"job-3"})
    assert "0123456789abcdef" in held and "feedfacefeedface" in held
    assert FIRST_MESSAGE[0] not in held
    held.reported(None, running=set())  # an agent that reports no prefixes changes nothing
    assert "0123456789abcdef" in held
    assert set(held) == {"0123456789abcdef", "feedfacefeedface"} and len(held) == 2


def test_held_prefixes_stay_bounded_after_many_jobs() -> None:
    held = HeldPrefixes()
    for index in range(1000):
        chain = prefix_chain(conversation(*(f"turn {turn} of {index}" for turn in range(100))))
        held.sent(f"job-{index}", [link.digest for link in bounded(chain)], slots=4)
    assert held.size == 4 * MAX_LINKS


# the pool's settings


def test_routing_settings_are_part_of_the_desired_state() -> None:
    spec = PoolSpec.model_validate(
        {"model_source": "m.gguf", "slots": 2, "routing": {"affinity_wait": 250}}
    )
    assert spec.routing.policy() == RoutingPolicy(affinity_wait=0.25, imbalance_bound=0.5)
    plain = RoutingSettings(mode="least_busy").policy()
    assert not plain.prefix_aware
    assert PoolSpec(model_source="m.gguf", slots=2).routing == RoutingSettings()
    for wrong in ({"affinity_wait": -1}, {"imbalance_bound": 2}, {"bound": 1}, {"mode": "random"}):
        with pytest.raises(ValidationError):
            RoutingSettings.model_validate(wrong)
