"""A job's events on their way to its one follower: a queue much smaller than ``asyncio.Queue``.

Thousands of jobs may wait in the buffer at once, each holding its events' queue. An
``asyncio.Queue`` holds four deques (its items, getters, putters and an ``Event``'s waiters),
about 3 KB before its first item; a mailbox holds a list and, only while its follower waits,
one future. It has one reader (the job's follower) and no bound, which is all a job needs.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")

# the consumed head is cut off once it is this long and at least half of the list
_COMPACT_AFTER = 64


class Mailbox(Generic[ItemT]):
    """First in, first out; ``get`` waits for an item, the others never wait."""

    __slots__ = ("_head", "_items", "_reader")

    def __init__(self) -> None:
        self._items: list[ItemT] = []
        self._head = 0  # items before it were taken
        self._reader: asyncio.Future[None] | None = None

    def put_nowait(self, item: ItemT) -> None:
        self._items.append(item)
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def get_nowait(self) -> ItemT:
        """The oldest item; ``asyncio.QueueEmpty`` when there is none."""
        if self._head == len(self._items):
            raise asyncio.QueueEmpty
        item = self._items[self._head]
        self._head += 1
        if self._head == len(self._items):
            self._items.clear()  # gives the list's storage back too
            self._head = 0
        elif self._head >= _COMPACT_AFTER and self._head * 2 >= len(self._items):
            del self._items[: self._head]
            self._head = 0
        return item

    async def get(self) -> ItemT:
        """The oldest item, once there is one. Only one reader may wait at a time."""
        while self._head == len(self._items):
            if self._reader is not None and not self._reader.done():
                raise RuntimeError("a mailbox has one reader")
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        return self.get_nowait()

    def qsize(self) -> int:
        return len(self._items) - self._head

    def empty(self) -> bool:
        return self._head == len(self._items)
