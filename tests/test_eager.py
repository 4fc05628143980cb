"""``start_now`` (control_plane/eager.py): a coroutine run in the caller's stack until it must
wait, then finished by a task, with what it waited for handed back to it."""

from __future__ import annotations

import asyncio

import pytest

from control_plane.eager import start_now


async def test_a_coroutine_that_never_waits_is_done_before_start_now_returns() -> None:
    done: list[str] = []

    async def write() -> None:
        done.append("written")

    assert start_now(write()) is None
    assert done == ["written"]


async def test_a_coroutine_that_waits_is_finished_by_a_task_with_what_it_waited_for() -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[str] = loop.create_future()
    steps: list[str] = []

    async def write() -> None:
        steps.append("before")
        steps.append(await gate)
        await asyncio.sleep(0)  # a bare yield: the loop's turn
        steps.append("after")

    task = start_now(write())
    assert task is not None and steps == ["before"]
    await asyncio.sleep(0.01)
    assert not task.done()
    gate.set_result("opened")
    await task
    assert steps == ["before", "opened", "after"]


async def test_failures_reach_the_coroutine_and_then_the_caller_or_the_task() -> None:
    loop = asyncio.get_running_loop()

    async def refuse() -> None:
        raise ValueError("at once")

    with pytest.raises(ValueError, match="at once"):
        start_now(refuse())

    gate: asyncio.Future[None] = loop.create_future()
    caught: list[str] = []

    async def wait_then_fail() -> None:
        try:
            await gate
        except ConnectionError as error:
            caught.append(str(error))
            raise RuntimeError("later") from error

    task = start_now(wait_then_fail())
    assert task is not None
    gate.set_exception(ConnectionError("gone"))
    with pytest.raises(RuntimeError, match="later"):
        await task
    assert caught == ["gone"]


async def test_a_cancelled_task_closes_its_coroutine_where_it_waits() -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[None] = loop.create_future()
    closed: list[bool] = []

    async def wait_forever() -> None:
        try:
            await gate
        finally:
            closed.append(True)

    task = start_now(wait_forever())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed == [True]
