"""The buffer serves jobs by priority class, then fairly across API keys (by estimated tokens,
weighted), then oldest first per key; a job put back goes before all; each key may have its own
bound on its waiting jobs. Places stay consistent with the order jobs are taken in."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.serving.buffer import Buffer
from control_plane.serving.jobs import InferenceJob, Sender
from control_plane.serving.rejections import KeyBufferFull
from control_plane.serving.scheduler import BufferFull
from paddler import protocol
from tests.test_scheduler import done, make_agent, make_scheduler

CHAT = protocol.GenerationRequest(kind="completion", prompt="hi")
EMBEDDING = protocol.EmbeddingRequest(inputs=("hi",))
HIGH, NORMAL, LOW = 0, 1, 2


def job(
    key: str = "",
    *,
    priority: int = NORMAL,
    tokens: int = 100,
    weight: float = 1.0,
    embedding: bool = False,
    pool: str = "m",
    max_buffered: int | None = None,
) -> InferenceJob:
    sender = Sender(key=key, priority=priority, weight=weight, max_buffered=max_buffered)
    request = EMBEDDING if embedding else CHAT
    return InferenceJob(pool=pool, request=request, sender=sender, estimated_tokens=tokens)


def take(buffer: Buffer, pool: str = "m", *, embeddings: bool = True) -> InferenceJob:
    """The job an agent with a free slot gets next."""
    head = buffer.first(pool, embeddings=embeddings)
    assert head is not None
    buffer.remove(head)
    return head


def withdraw(buffer: Buffer, gone: InferenceJob) -> None:
    gone.withdrawn = True  # as Scheduler.withdraw marks it before it leaves the buffer
    buffer.remove(gone)


def test_a_burst_from_one_key_does_not_hold_up_another_key() -> None:
    scheduler = make_scheduler(max_buffered=100)
    agent = make_agent("a", slots=1)
    scheduler.agent_joined(agent)
    burst = [job("a") for _ in range(50)]
    for each in burst:
        scheduler.submit(each)
    later = [job("b") for _ in range(5)]
    for each in later:
        scheduler.submit(each)
    served: list[InferenceJob] = []  # after b's jobs came
    while (running := next(iter(agent.jobs.values()), None)) is not None:
        scheduler.agent_message(agent, done(running.id))
        served.extend(agent.jobs.values())
    assert len(served) == 54
    keys = [each.sender.key for each in served]
    # the line drained when a's first job went, so that job's cost is forgotten: a, b tie
    assert keys[:10] == ["a", "b"] * 5, "the slot alternates between the keys"
    assert keys[: served.index(later[-1])].count("a") < 10
    assert [each for each in served if each.sender.key == "a"] == burst[1:]
    assert [each for each in served if each.sender.key == "b"] == later


def test_a_high_priority_job_goes_next_and_a_low_one_waits_for_all_normal_ones() -> None:
    buffer = Buffer()
    low = job("l", priority=LOW)
    buffer.append(low)
    normal = [job(f"n{index % 3}") for index in range(20)]
    for each in normal:
        buffer.append(each)
    high = job("h", priority=HIGH, tokens=100_000)
    buffer.append(high)
    assert buffer.position(high) == 1 and buffer.position(low) == 22
    assert take(buffer) is high
    taken = [take(buffer) for _ in range(21)]
    assert taken[-1] is low and set(taken[:-1]) == set(normal)
    assert buffer.count("m") == 0


def test_keys_share_by_weight() -> None:
    buffer = Buffer()
    heavy = [job("heavy", tokens=300, weight=3.0) for _ in range(40)]
    light = [job("light", tokens=300) for _ in range(40)]
    for each in heavy + light:
        buffer.append(each)
    first_twenty = [take(buffer).sender.key for _ in range(20)]
    assert first_twenty.count("heavy") == 15 and first_twenty.count("light") == 5


def test_keys_share_by_tokens_not_by_requests() -> None:
    buffer = Buffer()
    big = [job("big", tokens=1000) for _ in range(5)]
    small = [job("small", tokens=100) for _ in range(20)]
    for each in big + small:
        buffer.append(each)
    taken = [take(buffer) for _ in range(12)]
    assert taken == [big[0], *small[:10], big[1]]


def test_jobs_of_one_key_go_oldest_first_whatever_they_cost() -> None:
    chosen = random.Random(5)
    buffer = Buffer()
    jobs = [job(f"k{index % 4}", tokens=chosen.randint(1, 5000)) for index in range(200)]
    for each in jobs:
        buffer.append(each)
    taken = [take(buffer) for _ in range(200)]
    for key in ("k0", "k1", "k2", "k3"):
        mine = [each for each in jobs if each.sender.key == key]
        assert [each for each in taken if each.sender.key == key] == mine


def test_a_job_put_back_goes_before_all_others_the_latest_first() -> None:
    buffer = Buffer()
    waiting = [job("h", priority=HIGH), job(), job("e", priority=HIGH, embedding=True)]
    for each in waiting:
        buffer.append(each)
    first, second = job("low", priority=LOW), job(embedding=True)
    buffer.put_back(first)
    buffer.put_back(second)
    assert buffer.position(first) == 1 and buffer.position(second) == 1
    assert buffer.first("m", embeddings=False) is first
    # across the two lines: put back first (the latest first), the higher class, the earlier
    expected = [second, first, waiting[0], waiting[2], waiting[1]]
    assert buffer.waiting("m") == expected
    assert [take(buffer) for _ in range(5)] == expected


def test_across_the_two_lines_the_higher_class_then_the_earlier_goes_first() -> None:
    buffer = Buffer()
    chat, embedding = job(), job(priority=HIGH, embedding=True)
    buffer.append(chat)
    buffer.append(embedding)
    assert buffer.first("m") is embedding and buffer.first("m", embeddings=False) is chat
    low_embedding = job(priority=LOW, embedding=True)
    buffer.append(low_embedding)
    assert buffer.waiting("m") == [embedding, chat, low_embedding]


def test_a_key_is_not_charged_for_its_newest_job_when_it_is_withdrawn() -> None:
    buffer = Buffer()
    buffer.append(job("z"))
    take(buffer)
    given_up = job("a", tokens=100_000)
    other = job("b")
    buffer.append(given_up)
    buffer.append(other)
    withdraw(buffer, given_up)
    again = job("a")
    later = job("b")
    buffer.append(again)
    buffer.append(later)
    assert [take(buffer) for _ in range(3)] == [other, again, later]


def test_a_drained_buffer_keeps_nothing_and_idle_keys_are_forgotten() -> None:
    buffer = Buffer()
    backlog = [job("backlog", tokens=1) for _ in range(2000)]
    for each in backlog:
        buffer.append(each)
    for index in range(1000):
        buffer.append(job(f"once{index}", tokens=1))
        take(buffer)
        take(buffer)
    line = buffer._queues["m"].lines[False]
    share = line._shares[NORMAL]
    assert len(share) <= 3 and len(share._idle) <= 3, "keys that sent once are forgotten"
    while buffer.count("m"):
        take(buffer)
    assert buffer._queues == {} and buffer._by_key == {}
    assert buffer.count_of_key("backlog") == 0


def test_ten_thousand_waiters_join_ask_their_places_and_leave() -> None:
    chosen = random.Random(3)
    buffer = Buffer()
    jobs = [
        job(
            f"k{chosen.randrange(100)}",
            priority=chosen.choice((HIGH, NORMAL, NORMAL, LOW)),
            tokens=chosen.randint(1, 2000),
            embedding=chosen.random() < 0.2,
        )
        for _ in range(10_000)
    ]
    for each in jobs:
        buffer.append(each)
    for kind in (False, True):
        line = [each for each in jobs if each.wants_embeddings == kind]
        ordered = buffer.waiting_like(line[0])
        assert sorted(buffer.position(each) for each in line) == list(range(1, len(line) + 1))
        assert [buffer.position(each) for each in ordered] == list(range(1, len(line) + 1))
    for each in chosen.sample(jobs, 5000):
        withdraw(buffer, each)
    while buffer.count("m"):
        take(buffer)
    assert buffer._queues == {} and buffer._by_key == {}


@dataclass
class Model:
    """What the test knows of each waiting job, to check the buffer's answers against."""

    arrival: dict[InferenceJob, int] = field(default_factory=dict)  # put back: negative
    put_back: set[InferenceJob] = field(default_factory=set)
    taken: list[InferenceJob] = field(default_factory=list)  # not waiting, may be put back
    counter: int = 0

    def across_lines(self, waiting: InferenceJob) -> tuple[int, int, int]:
        if waiting in self.put_back:
            return 0, 0, self.arrival[waiting]
        return 1, waiting.sender.priority, self.arrival[waiting]


appends = st.tuples(
    st.just("append"),
    st.integers(0, 3),  # key
    st.integers(0, 2),  # priority
    st.integers(1, 3000),  # estimated tokens
    st.sampled_from((0.5, 1.0, 2.0)),  # weight
    st.booleans(),  # embedding
)
operations = st.lists(
    st.one_of(
        appends,
        appends,  # twice as likely: the buffer grows
        st.tuples(st.just("take"), st.booleans()),
        st.tuples(st.just("put_back"), st.integers(0, 1000)),
        st.tuples(st.just("withdraw"), st.integers(0, 1000)),
    ),
    max_size=120,
)


@settings(derandomize=True, max_examples=150, deadline=None)
@given(operations)
def test_places_match_the_order_jobs_are_taken_in(steps: list[tuple[object, ...]]) -> None:
    buffer = Buffer()
    model = Model()
    for step in steps:
        apply(buffer, model, step)
        check_places(buffer, model)
    drain_in_order(buffer, model)


def test_places_match_the_order_jobs_are_taken_in_through_a_long_random_walk() -> None:
    chosen = random.Random(7)
    buffer = Buffer()
    model = Model()
    for _ in range(2000):
        draw = chosen.random()
        step: tuple[object, ...]
        if draw < 0.5:
            step = (
                "append",
                chosen.randrange(6),
                chosen.choice((HIGH, NORMAL, NORMAL, LOW)),
                chosen.randint(1, 3000),
                chosen.choice((0.5, 1.0, 2.0)),
                chosen.random() < 0.3,
            )
        elif draw < 0.75:
            step = ("take", chosen.random() < 0.7)
        elif draw < 0.85:
            step = ("put_back", chosen.randrange(1000))
        else:
            step = ("withdraw", chosen.randrange(1000))
        apply(buffer, model, step)
        check_places(buffer, model)
    assert buffer.count("m") > 100
    drain_in_order(buffer, model)


def drain_in_order(buffer: Buffer, model: Model) -> None:
    """Take every job: with no new ones, in the order of their places, which is: put back
    first (the latest first), then by class, each key's jobs oldest first."""
    lines = {kind: buffer.waiting_like(job(embedding=kind)) for kind in (False, True)}
    drained: dict[bool, list[InferenceJob]] = {False: [], True: []}
    while buffer.count("m"):
        taken = take(buffer)
        drained[taken.wants_embeddings].append(taken)
    assert drained == lines, "with no new jobs, they are taken in the order of their places"
    for line in lines.values():
        fresh = [each for each in line if each not in model.put_back]
        assert line[: len(line) - len(fresh)] == sorted(
            model.put_back & set(line), key=model.arrival.__getitem__
        )
        assert [each.sender.priority for each in fresh] == sorted(
            each.sender.priority for each in fresh
        )
        for sender in {(each.sender.key, each.sender.priority) for each in fresh}:
            mine = [each for each in fresh if (each.sender.key, each.sender.priority) == sender]
            assert mine == sorted(mine, key=model.arrival.__getitem__), "FIFO within a key"
    assert buffer._queues == {} and buffer._by_key == {}


def apply(buffer: Buffer, model: Model, step: tuple[object, ...]) -> None:
    waiting = list(model.arrival)
    match step:
        case ("append", int(key), int(priority), int(tokens), float(weight), bool(embedding)):
            new = job(f"k{key}", priority=priority, tokens=tokens, weight=weight)
            if embedding:
                new.request = EMBEDDING
            buffer.append(new)
            model.counter += 1
            model.arrival[new] = model.counter
        case ("take", bool(embeddings)):
            heads = [
                line[0]
                for kind in ((False, True) if embeddings else (False,))
                if (line := buffer.waiting_like(job(embedding=kind)))
            ]
            head = buffer.first("m", embeddings=embeddings)
            if not heads:
                assert head is None
                return
            assert head is min(heads, key=model.across_lines)
            assert buffer.position(head) == 1
            buffer.remove(head)
            del model.arrival[head]
            model.put_back.discard(head)
            model.taken.append(head)
        case ("put_back", int(index)) if model.taken:
            again = model.taken.pop(index % len(model.taken))
            buffer.put_back(again)
            model.counter += 1
            model.arrival[again] = -model.counter
            model.put_back.add(again)
        case ("withdraw", int(index)) if waiting:
            gone = waiting[index % len(waiting)]
            withdraw(buffer, gone)
            gone.withdrawn = False  # so that the test may take it as a fresh one later
            del model.arrival[gone]
            model.put_back.discard(gone)


def check_places(buffer: Buffer, model: Model) -> None:
    for kind in (False, True):
        line = buffer.waiting_like(job(embedding=kind))
        assert [buffer.position(each) for each in line] == list(range(1, len(line) + 1))
        assert sorted(line, key=id) == sorted(
            (each for each in model.arrival if each.wants_embeddings == kind), key=id
        )
        assert buffer.count_like(job(embedding=kind)) == len(line)
    for key in {each.sender.key for each in model.arrival}:
        expected = sum(1 for each in model.arrival if each.sender.key == key)
        assert buffer.count_of_key(key) == expected
    assert buffer.count("m") == len(model.arrival)


def test_a_key_at_its_bound_is_turned_away_alone(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    scheduler = make_scheduler(max_buffered=100)  # no agent: every job waits

    def bounded(pool: str = "m") -> InferenceJob:
        return job("burst", pool=pool, max_buffered=3)

    mine = [bounded(), bounded(), bounded("n")]
    for each in mine:
        scheduler.submit(each)
    with pytest.raises(KeyBufferFull) as refused:
        scheduler.submit(bounded())
    assert isinstance(refused.value, BufferFull)
    assert (refused.value.key, refused.value.size, refused.value.pool) == ("burst", 3, "m")
    assert "'burst' already has 3 requests waiting" in str(refused.value)
    for other in (job("calm", max_buffered=3), job(), job("calm", pool="n")):
        scheduler.submit(other)
    assert scheduler.counters["rejected_key_buffer_full"] == 1
    assert scheduler.counters["rejected_buffer_full"] == 0
    assert any("for key 'burst'" in record.getMessage() for record in caplog.records)
    scheduler.withdraw(mine[2], "client_disconnected")
    scheduler.submit(bounded())  # room again
    agent = make_agent("a", pool="free")
    scheduler.agent_joined(agent)
    at_once = bounded("free")
    scheduler.submit(at_once)  # it need not wait: the bound on waiting jobs does not apply
    assert at_once.agent is agent


def test_the_pool_bound_still_holds_for_keys_under_their_own() -> None:
    scheduler = make_scheduler(max_buffered=2)
    for _ in range(2):
        scheduler.submit(job("a", max_buffered=10))
    with pytest.raises(BufferFull) as refused:
        scheduler.submit(job("a", max_buffered=10))
    assert not isinstance(refused.value, KeyBufferFull)
    assert scheduler.counters["rejected_buffer_full"] == 1
