"""The buffer's indexed queue and the shared wake-ups of waiting jobs: same answers as a plain
list, whatever the order of appends, put-backs and removals."""

from __future__ import annotations

import asyncio
import random
import time

from control_plane.serving.buffer import Buffer
from control_plane.serving.fleet import Fleet
from control_plane.serving.jobs import InferenceJob, Tick
from control_plane.serving.relay import Patience, Waiting, follow
from control_plane.serving.scheduler import Scheduler
from control_plane.serving.wake_ups import WakeUps
from paddler import protocol

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
