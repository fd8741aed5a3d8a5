"""Cancelled operations: Sanic cancels handlers on timeouts and disconnects.

A client that returned a connection with an unread reply (aiomcache#489) would hand later
reads other keys' data; every network interface must stay correct.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

import pytest
from sanic import Sanic

from sanic_synchro_ctx import Synchro, SynchroError, SynchroTypeError, SynchroValueError
from sanic_synchro_ctx.interfaces.base import BaseSynchroInterface

from .registry import INTERFACES, NETWORK

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("kind", NETWORK)
async def test_a_thousand_cancelled_operations_leave_every_later_read_correct(
    kind: str,
    make_interface: Callable[..., BaseSynchroInterface],
    app_name: str,
    rng: random.Random,
) -> None:
    interface = make_interface(kind)
    Synchro(Sanic(app_name), interface=interface)
    try:
        values = {f"key{i}": {"n": i, "pad": "x" * rng.randint(0, 3000)} for i in range(100)}
        await interface.update(values)
        await interface.set("counter", 0)

        async def work(i: int) -> None:
            key = f"key{i % 100}"
            if i % 3 == 0:
                assert await interface.get(key) == values[key]
            elif i % 3 == 1:
                await interface.get_many([key, f"key{(i + 1) % 100}"])
            else:
                await interface.increment("counter")

        for round_ in range(3):  # cancellations land at different points each round
            tasks = [asyncio.create_task(work(i)) for i in range(1_000)]
            for _ in range(round_ * 2 + rng.randint(1, 3)):
                await asyncio.sleep(0)
            cancelled = sum(task.cancel() for task in tasks)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            unexpected = [r for r in failures if not isinstance(r, asyncio.CancelledError)]
            assert unexpected == [], unexpected[:3]
            assert cancelled > 0

            # Every later read answers (a dead connection would never answer: bounded
            # here), and answers with its own key's data.
            async def reads() -> None:
                for name in rng.sample(list(values), 100):
                    assert await interface.get(name) == values[name]
                assert await interface.get_many(list(values)) == values
                counter = await interface.get("counter")
                assert await interface.increment("counter") == counter + 1

            await asyncio.wait_for(reads(), timeout=20)
    finally:
        await interface.aclose()


async def _cancelled_at_random(call: Callable[[], Any], times: int, rng: random.Random) -> None:
    """``times`` calls, each cancelled after a random 0-2 ms (some finish first)."""
    for _ in range(times):
        with contextlib.suppress(asyncio.TimeoutError, SynchroTypeError, SynchroValueError):
            await asyncio.wait_for(call(), rng.uniform(0, 0.002))


@pytest.mark.parametrize("kind", NETWORK)
async def test_cancelling_calls_answered_with_an_error_keeps_every_connection(
    kind: str,
    make_interface: Callable[..., BaseSynchroInterface],
    app_name: str,
    rng: random.Random,
) -> None:
    """The issue's 40 of 40 reads that hung: an error reply to a cancelled caller."""
    interface = make_interface(kind)
    Synchro(Sanic(app_name), interface=interface)
    try:
        await interface.set("s", "abc")
        await _cancelled_at_random(lambda: interface.increment("s"), 200, rng)

        async def reads() -> None:
            for _ in range(40):
                assert await interface.get("s") == "abc"

        await asyncio.wait_for(reads(), timeout=20)
    finally:
        await interface.aclose()


@pytest.mark.parametrize("kind", INTERFACES)
async def test_cancelled_overflowing_increments_leave_the_counter_as_it_was(
    kind: str,
    make_interface: Callable[..., BaseSynchroInterface],
    app_name: str,
    rng: random.Random,
) -> None:
    interface = make_interface(kind)
    Synchro(Sanic(app_name), interface=interface)
    try:
        await interface.set("n", 2**63 - 6)
        await _cancelled_at_random(lambda: interface.increment("n", 10), 300, rng)
        assert await asyncio.wait_for(interface.get("n"), 20) == 2**63 - 6
    finally:
        await interface.aclose()


@pytest.mark.parametrize("kind", INTERFACES)
async def test_a_release_cancelled_while_its_renewer_ends_releases_then_is_cancelled(
    kind: str, make_interface: Callable[..., BaseSynchroInterface], app_name: str
) -> None:
    """An async lock's release() first stops its renewal task and waits for it; a
    cancellation of the releasing task meanwhile is not swallowed: the lock is released,
    then the task ends cancelled."""
    interface = make_interface(kind)
    app = Sanic(app_name)
    Synchro(app, interface=interface)
    ctx = app.ctx.synchro
    try:
        lock = ctx.lock("renewed", ttl=5, auto_renew=True)
        await lock.acquire()
        releasing = asyncio.create_task(lock.release())
        await asyncio.sleep(0)  # one loop pass: release() runs up to its wait for the renewer
        assert not releasing.done()
        releasing.cancel()
        await asyncio.wait({releasing}, timeout=5)
        assert releasing.cancelled()
        assert not await ctx.locked("renewed")
    finally:
        await interface.aclose()


@pytest.mark.parametrize("kind", NETWORK)
async def test_cancelled_pipelines_apply_each_operation_at_most_once(
    kind: str, make_interface: Callable[..., BaseSynchroInterface], app_name: str
) -> None:
    """Pipelines of 20 increments cancelled at random points: an interrupted handle says its
    effect is unknown, the counter holds between what was answered and what was queued
    (nothing sent twice), and the interface answers correctly afterwards."""
    app = Sanic(app_name)
    Synchro(app, interface=make_interface(kind))
    ctx = app.ctx.synchro
    try:
        answered = queued = 0
        errors: list[str] = []
        for round_ in range(30):
            handles: list[Any] = []

            async def run(handles: list[Any] = handles) -> None:
                async with ctx.pipeline() as pipe:
                    handles.extend(pipe.increment("n") for _ in range(20))

            task = asyncio.create_task(run())
            for _ in range(round_ % 6):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            queued += len(handles)
            for handle in handles:
                try:
                    await handle
                    answered += 1
                except SynchroError as exc:
                    errors.append(str(exc))
        assert all("effect of its increment() is unknown" in error for error in errors), errors[:1]
        final = await ctx.get("n", 0)
        assert answered <= final <= queued
        assert await ctx.increment("n") == final + 1  # the interface still answers
    finally:
        await ctx.interface.aclose()


def _stop_cases() -> list[Any]:
    cases = [pytest.param(kind, {}, id=kind) for kind in INTERFACES]
    cases += [pytest.param(kind, {"batching": False}, id=f"{kind}-unbatched") for kind in NETWORK]
    return cases


#: How long a cancelled task may take to end: far more than any operation here takes; a
#: task that lost its cancellation loops on and never ends.
STOP_BOUND = 5.0


@pytest.mark.parametrize(("kind", "options"), _stop_cases())
async def test_a_cancelled_task_always_ends(
    kind: str,
    options: dict[str, Any],
    make_interface: Callable[..., BaseSynchroInterface],
    app_name: str,
    rng: random.Random,
) -> None:
    """Tasks that loop over operations (alone, two side by side, in pipelines), cancelled
    after a random 0-5 ms, all end: the cancellation reaches them wherever it lands. A
    client that loses it (CPython < 3.12's asyncio.wait_for returns the inner result and
    drops a cancellation that arrives as the inner one finishes, python/cpython#86296;
    redis-py awaits every send through it when socket_timeout is set) keeps a lock's
    renewer, a leader's job or a request's handler running after Sanic cancelled it."""
    app = Sanic(app_name)
    Synchro(app, interface=make_interface(kind, **options))
    ctx = app.ctx.synchro

    # Each pass yields once: an interface that answers without suspending (InMemory)
    # would otherwise never let the loop run, as any loop that awaits nothing real.
    async def increments() -> None:
        while True:
            await ctx.increment("n")
            await asyncio.sleep(0)

    async def pipelines() -> None:
        while True:
            async with ctx.pipeline() as pipe:
                pipe.increment("n")
                pipe.get("n")
            await asyncio.sleep(0)

    try:
        await ctx.set("n", 0)
        for workload, width in [(increments, 1), (increments, 2), (pipelines, 1)]:
            for round_ in range(40):
                tasks = [asyncio.create_task(workload()) for _ in range(width)]
                await asyncio.sleep(rng.uniform(0, 0.005))
                for task in tasks:
                    task.cancel()
                done, running = await asyncio.wait(tasks, timeout=STOP_BOUND)
                if running:  # cancel again (it may stop this time) before failing
                    for task in running:
                        task.cancel()
                    await asyncio.wait(running, timeout=STOP_BOUND)
                assert not running, f"{workload.__name__} x{width}, round {round_}: kept running"
                for task in done:
                    assert task.cancelled(), task.exception()
        assert await ctx.increment("n") == await ctx.get("n")  # still answers
    finally:
        await ctx.interface.aclose()
