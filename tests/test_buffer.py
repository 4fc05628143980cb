"""The buffer's indexed queue and the shared wake-ups of waiting jobs: same answers as a plain
list, whatever the order of appends, put-backs and removals."""

from __future__ import annotations

import asyncio
import gc
import random
import time
import weakref
from collections.abc import Callable

import pytest

from control_plane import errors
from control_plane.serving.buffer import Buffer
from control_plane.serving.fleet import AgentLink, Fleet
from control_plane.serving.jobs import InferenceJob, Tick
from control_plane.serving.relay import Patience, Waiting, follow
from control_plane.serving.scheduler import Scheduler
from control_plane.serving.wake_ups import WakeUps
from paddler import protocol
from tests.test_scheduler import done, make_agent

CHAT = protocol.GenerationRequest(kind="completion", prompt="hi")
EMBEDDING = protocol.EmbeddingRequest(inputs=("hi",))


def job(embedding: bool = False, pool: str = "m") -> InferenceJob:
    return InferenceJob(pool=pool, request=EMBEDDING if embedding else CHAT)


def test_positions_match_a_plain_list_through_random_operations() -> None:
    chosen = random.Random(11)
    buffer = Buffer()
    model: list[InferenceJob] = []  # the same queue, the slow way
    for _ in range(3000):
        action = chosen.random()
        if action < 0.45 or not model:
            new = job(embedding=chosen.random() < 0.3)
            buffer.append(new)
            model.append(new)
        elif action < 0.55:
            new = job(embedding=chosen.random() < 0.3)
            buffer.put_back(new)
            model.insert(0, new)
        elif action < 0.8:  # the head leaves (dispatched)
            head = buffer.first("m")
            assert head is model[0]
            buffer.remove(head)
            model.pop(0)
        else:  # one from anywhere leaves (withdrawn)
            gone = chosen.choice(model)
            buffer.remove(gone)
            model.remove(gone)
        assert buffer.waiting("m") == model and buffer.count("m") == len(model)
        for kind in (False, True):
            like = [each for each in model if each.wants_embeddings == kind]
            if like:
                assert buffer.waiting_like(like[0]) == like
                assert buffer.count_like(like[0]) == len(like)
        sample = chosen.sample(model, min(5, len(model)))
        for each in sample:
            like = [other for other in model if other.wants_embeddings == each.wants_embeddings]
            assert buffer.position(each) == like.index(each) + 1


def test_first_skips_embedding_jobs_when_asked_and_pools_are_apart() -> None:
    buffer = Buffer()
    embedding, chat, other = job(embedding=True), job(), job(pool="other")
    for each in (embedding, chat, other):
        buffer.append(each)
    assert buffer.first("m") is embedding
    assert buffer.first("m", embeddings=False) is chat
    assert buffer.first("other") is other and buffer.position(other) == 1


def test_a_drained_pool_is_forgotten_and_a_gone_job_has_no_place() -> None:
    buffer = Buffer()
    jobs = [job() for _ in range(1000)]
    for each in jobs:
        buffer.append(each)
    for each in jobs:
        buffer.remove(each)
    assert buffer.count("m") == 0 and buffer.first("m") is None
    assert buffer.position(jobs[0]) == 0 and buffer._queues == {}


async def test_wake_ups_come_on_time_and_share_their_timers() -> None:
    wake_ups = WakeUps(resolution=0.05)
    jobs = [job() for _ in range(100)]
    start = time.monotonic()
    for each in jobs:
        wake_ups.wake(each, start + 0.1)
    gone = jobs[0]
    gone.withdrawn = True  # nobody follows it any more: no tick
    assert len(wake_ups) == 100
    await asyncio.sleep(0.2)
    assert gone.events.empty() and len(wake_ups) == 0
    for each in jobs[1:]:
        assert each.events.get_nowait() == Tick() and each.events.empty()


async def test_many_waiters_hear_their_places_on_time_without_a_timer_each() -> None:
    scheduler = Scheduler(Fleet(), max_buffered=1000, max_attempts=3)
    patience = Patience(
        buffer_timeout=60.0,
        first_token_timeout=60.0,
        stall_timeout=60.0,
        report_interval=0.2,
        keepalive_interval=60.0,
    )
    jobs = [job() for _ in range(300)]
    for each in jobs:
        scheduler.submit(each)  # no agent: all wait
    followers = [follow(each, scheduler, patience) for each in jobs]
    started = time.monotonic()
    firsts = await asyncio.gather(*(anext(updates) for updates in followers))
    assert time.monotonic() - started >= 0.2
    assert [update.position for update in firsts if isinstance(update, Waiting)] == list(
        range(1, 301)
    )
    scheduler.withdraw(jobs[0], "client_disconnected")
    seconds = await asyncio.gather(*(anext(updates) for updates in followers[1:]))
    assert [update.position for update in seconds if isinstance(update, Waiting)] == list(
        range(1, 300)
    )
    thirds = [asyncio.ensure_future(anext(updates)) for updates in followers[1:]]
    await asyncio.sleep(0.05)
    assert len(scheduler.wake_ups) == 299  # each waits for a wake-up...
    assert len(scheduler.wake_ups._due) <= 10  # ...and they share a handful of timers
    await asyncio.gather(*thirds)


async def eventually(condition: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def timed_patience(report_interval: float, buffer_timeout: float = 60.0) -> Patience:
    return Patience(
        buffer_timeout=buffer_timeout,
        first_token_timeout=60.0,
        stall_timeout=60.0,
        report_interval=report_interval,
        keepalive_interval=60.0,
    )


async def test_reports_handed_to_a_function_come_from_the_timer_while_followers_sleep() -> None:
    scheduler = Scheduler(Fleet(), max_buffered=100, max_attempts=3)
    jobs = [job() for _ in range(50)]
    heard: dict[int, list[Waiting]] = {index: [] for index in range(50)}
    for each in jobs:
        scheduler.submit(each)  # no agent: all wait
    followers = [
        follow(each, scheduler, timed_patience(0.1), reports=heard[index].append)
        for index, each in enumerate(jobs)
    ]
    nexts = [asyncio.ensure_future(anext(updates)) for updates in followers]
    await eventually(lambda: all(len(reports) >= 2 for reports in heard.values()), "reports")
    assert not any(task.done() for task in nexts)  # the followers yielded nothing
    assert all(each.events.empty() for each in jobs)  # and were never woken (no Tick)
    assert [heard[index][0].position for index in range(50)] == list(range(1, 51))
    first = heard[7][0]
    assert 0.09 <= first.seconds_waited <= 2.0 and first.expected_wait is None
    scheduler.withdraw(jobs[0], "client_disconnected")
    counts = [len(heard[index]) for index in range(50)]
    await eventually(
        lambda: all(len(heard[index]) > counts[index] for index in range(1, 50)), "new reports"
    )
    assert len(heard[0]) == counts[0]  # a job that stopped waiting hears no more
    assert [heard[index][-1].position for index in range(1, 50)] == list(range(1, 50))
    for each in jobs[1:]:
        scheduler.withdraw(each, "client_disconnected")
    # the timer holds none of them once they stop waiting (within a report interval)
    await eventually(lambda: len(scheduler.wake_ups) == 0, "the timer to let go")
    for task in nexts:
        task.cancel()


async def test_a_follower_with_timed_reports_gives_up_at_its_buffer_deadline() -> None:
    scheduler = Scheduler(Fleet(), max_buffered=10, max_attempts=3)
    waiting = job()
    scheduler.submit(waiting)
    heard: list[Waiting] = []
    updates = follow(
        waiting, scheduler, timed_patience(0.1, buffer_timeout=0.45), reports=heard.append
    )
    with pytest.raises(errors.OpenAIError) as raised:
        await anext(updates)
    assert raised.value.code == "buffer_timeout"
    assert 1 <= len(heard) <= 4 and waiting.withdrawn
    assert [report.position for report in heard] == [1] * len(heard)


def one_slot_taken() -> tuple[AgentLink, Scheduler, InferenceJob, InferenceJob]:
    """An agent of one slot, the job that holds it, and one that waits for it."""
    agent = make_agent("a")
    scheduler = Scheduler(Fleet(), max_buffered=10, max_attempts=3)
    scheduler.agent_joined(agent)
    busy, waiting = job(), job()
    scheduler.submit(busy)
    scheduler.submit(waiting)
    return agent, scheduler, busy, waiting


async def test_timed_reports_stop_when_the_job_is_dispatched_and_start_again_if_it_returns() -> (
    None
):
    agent, scheduler, busy, waiting = one_slot_taken()
    heard: list[Waiting] = []
    updates = follow(waiting, scheduler, timed_patience(0.1), reports=heard.append)
    following = asyncio.ensure_future(anext(updates))
    await eventually(lambda: len(heard) >= 1, "a report")
    assert not following.done()
    scheduler.agent_message(agent, done(busy.id))  # the slot frees: ``waiting`` is sent there
    assert waiting.agent is agent
    heard_before = len(heard)
    await asyncio.sleep(0.25)
    assert len(heard) == heard_before and not following.done()
    scheduler.agent_left(agent)  # before its first token: it waits again, at the head
    assert waiting.waiting
    await eventually(lambda: len(heard) > heard_before, "reports again")
    assert not following.done()
    scheduler.agent_joined(agent := make_agent("b"))
    scheduler.agent_message(agent, protocol.Token(job_id=waiting.id, text="Hi"))
    update = await following
    assert isinstance(update, protocol.Token) and update.text == "Hi"


async def test_the_timer_lets_go_of_a_finished_followers_stream_at_once() -> None:
    class Stream:  # what hands reports to a client: a direct route's exchange
        def __init__(self) -> None:
            self.heard: list[Waiting] = []

        def report(self, update: Waiting) -> None:
            self.heard.append(update)

    agent, scheduler, busy, waiting = one_slot_taken()
    stream = Stream()
    updates = follow(waiting, scheduler, timed_patience(0.1), reports=stream.report)
    following = asyncio.ensure_future(anext(updates))
    heard = stream.heard
    await eventually(lambda: bool(heard), "a report")
    scheduler.agent_message(agent, done(busy.id))
    scheduler.agent_message(agent, done(waiting.id))
    assert await following == done(waiting.id)
    with pytest.raises(StopAsyncIteration):
        await anext(updates)
    assert len(scheduler.wake_ups) == 1  # its next wake-up is still to come...
    gone = weakref.ref(stream)
    del stream
    gc.collect()
    assert gone() is None  # ...but holds nothing of the stream's
