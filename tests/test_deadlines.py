"""Bounded waits sharing one timer per loop: each ends at its own deadline, and only a
deadline turns a cancellation into TimeoutError."""

from __future__ import annotations

import asyncio
import sys

import pytest

from sanic_synchro_ctx.deadlines import bounded

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10 uses asyncio.wait_for"),
]


async def test_a_wait_past_its_bound_raises_timeout_error_and_cancels_what_it_awaited() -> None:
    loop = asyncio.get_running_loop()
    never: asyncio.Future[None] = loop.create_future()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await bounded(never, 0.2)
    assert 0.2 <= loop.time() - started < 2
    assert never.cancelled()
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0  # nothing left to hit the caller later
    assert await bounded(asyncio.sleep(0, "next"), 0.2) == "next"


async def test_each_wait_ends_at_its_own_deadline_whatever_order_they_began_in() -> None:
    loop = asyncio.get_running_loop()
    ended: dict[float, float] = {}

    async def wait(timeout: float) -> None:
        started = loop.time()
        with pytest.raises(TimeoutError):
            await bounded(loop.create_future(), timeout)
        ended[timeout] = loop.time() - started

    # the longest first: the shared timer must be brought forward for the shorter ones
    await asyncio.gather(wait(1.5), wait(0.9), wait(0.3), wait(0.6))
    assert sorted(ended, key=ended.__getitem__) == [0.3, 0.6, 0.9, 1.5]
    for timeout, took in ended.items():
        assert timeout <= took < timeout + 0.5, (timeout, took)


async def test_waits_that_finish_in_time_return_their_results() -> None:
    loop = asyncio.get_running_loop()

    async def answer(value: int) -> int:
        await asyncio.sleep(0)
        return value

    assert await asyncio.gather(*(bounded(answer(i), 0.5) for i in range(1000))) == list(
        range(1000)
    )
    # and the shared timer, armed for the first of them, ends no later wait early
    future: asyncio.Future[str] = loop.create_future()
    loop.call_later(0.7, future.set_result, "late but in time")
    assert await bounded(future, 2.0) == "late but in time"


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    loop = asyncio.get_running_loop()
    waiting = asyncio.Event()

    async def waiter() -> None:
        waiting.set()
        await bounded(loop.create_future(), 5.0)

    task = asyncio.create_task(waiter())
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancellation_from_outside_at_the_deadline_is_not_made_a_timeout() -> None:
    loop = asyncio.get_running_loop()
    waiting = asyncio.Event()
    began: list[float] = []

    async def waiter() -> None:
        began.append(loop.time())  # the wait's deadline is at least this + 0.3
        waiting.set()
        await bounded(loop.create_future(), 0.3)

    task = asyncio.create_task(waiter())
    await waiting.wait()
    # cancelled from outside no later than the deadline, in the same pass of the loop at
    # the latest: whoever asked for the task to stop must see it stopped, not a timeout
    loop.call_at(began[0] + 0.3, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
