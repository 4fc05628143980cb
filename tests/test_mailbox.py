"""A job's mailbox: first in first out for its one follower, waiting only in ``get``, and
small however many jobs wait (it replaced ``asyncio.Queue`` for that)."""

from __future__ import annotations

import asyncio
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control_plane.serving.mailbox import Mailbox


@given(st.lists(st.one_of(st.integers(0, 1000), st.none()), max_size=400))
def test_items_come_out_in_the_order_they_went_in(steps: list[int | None]) -> None:
    """``steps``: put that number, or (None) take one; whatever was put comes out in order."""
    mailbox: Mailbox[int] = Mailbox()
    put: list[int] = []
    taken: list[int] = []
    for step in steps:
        if step is not None:
            mailbox.put_nowait(step)
            put.append(step)
        elif not mailbox.empty():
            taken.append(mailbox.get_nowait())
        assert mailbox.qsize() == len(put) - len(taken)
    while not mailbox.empty():
        taken.append(mailbox.get_nowait())
    assert taken == put
    with pytest.raises(asyncio.QueueEmpty):
        mailbox.get_nowait()


async def test_get_waits_for_the_next_item_and_a_timeout_loses_nothing() -> None:
    mailbox: Mailbox[str] = Mailbox()
    reader = asyncio.create_task(mailbox.get())
    await asyncio.sleep(0)
    assert not reader.done()
    mailbox.put_nowait("first")
    mailbox.put_nowait("second")
    assert await reader == "first"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await mailbox.get()
            await mailbox.get()  # the first get takes "second"; this one times out
    mailbox.put_nowait("third")
    assert await mailbox.get() == "third" and mailbox.empty()


async def test_a_second_waiting_reader_is_refused() -> None:
    mailbox: Mailbox[int] = Mailbox()
    first = asyncio.create_task(mailbox.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="one reader"):
        await mailbox.get()
    mailbox.put_nowait(1)
    assert await first == 1


async def test_a_long_backlog_taken_gives_its_storage_back() -> None:
    mailbox: Mailbox[int] = Mailbox()
    empty_size = sys.getsizeof(mailbox._items)
    for number in range(10_000):
        mailbox.put_nowait(number)
    assert [mailbox.get_nowait() for _ in range(9_000)] == list(range(9_000))
    assert sys.getsizeof(mailbox._items) < 1_500 * 8 + empty_size * 2  # the head was cut off
    while not mailbox.empty():
        mailbox.get_nowait()
    assert sys.getsizeof(mailbox._items) == empty_size


def test_an_empty_mailbox_is_a_fraction_of_an_asyncio_queue() -> None:
    def size(queue: object) -> int:
        parts = [queue, *getattr(queue, "__dict__", {}).values()]
        parts += [getattr(queue, name) for name in getattr(queue, "__slots__", ())]
        return sum(sys.getsizeof(part) for part in parts)

    assert size(Mailbox()) * 5 < size(asyncio.Queue())
