"""Pipelines on every interface x front end: the same results as separate calls, in order,
in one round trip where the backend allows; each operation fails alone."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sanic import Sanic

from sanic_synchro_ctx import Synchro, SynchroError, SynchroTypeError, SynchroValueError
from sanic_synchro_ctx.interfaces.base import BaseSynchroInterface

from .frontends import BlockingAsAsync
from .registry import NETWORK

pytestmark = pytest.mark.timeout(60)


def mixed_operations(seed: int, count: int) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """``count`` operations on five keys, mixing every kind (some of them fail)."""
    rng = random.Random(seed)
    keys = [f"k{i}" for i in range(5)]
    made: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    for _ in range(count):
        key, other = rng.choice(keys), rng.choice(keys)
        choice = rng.randrange(13)
        if choice == 0:
            made.append(("set", (key, rng.choice([1, "text", [1, 2], {"a": 1}, None])), {}))
        elif choice == 1:
            made.append(("get", (key, "missing"), {}))
        elif choice == 2:
            made.append(("increment", (key, rng.randint(-5, 5)), {}))
        elif choice == 3:
            made.append(("decrement", (key,), {}))
        elif choice == 4:
            made.append(("replace", (key, rng.randint(0, 3)), {}))
        elif choice == 5:
            made.append(("compare_and_set", (key, rng.randint(0, 3), rng.randint(0, 3)), {}))
        elif choice == 6:
            made.append(("setdefault", (key, rng.randint(0, 3)), {}))
        elif choice == 7:
            made.append(("set_default", ({key: 7, other: 8},), {}))
        elif choice == 8:
            made.append(("get_many", ([key, other, "absent"],), {}))
        elif choice == 9:
            made.append(("update", ({key: rng.randint(0, 9), other: "u"},), {}))
        elif choice == 10:
            made.append(("delete", (key, other), {}))
        elif choice == 11:
            made.append(("expire", (key, 300), {}))
        else:
            made.append(("locked", (key,), {}))
    return made


def outcome_of(run: Any) -> tuple[str, Any]:
    try:
        return ("ok", run())
    except SynchroError as exc:
        return ("error", type(exc).__name__)


async def separately(ctx: Any, operations: list[Any]) -> list[tuple[str, Any]]:
    results = []
    for name, args, kwargs in operations:
        try:
            results.append(("ok", await getattr(ctx, name)(*args, **kwargs)))
        except SynchroError as exc:
            results.append(("error", type(exc).__name__))
    return results


async def pipelined(ctx: Any, operations: list[Any]) -> list[tuple[str, Any]]:
    async with ctx.pipeline() as pipe:
        handles = [getattr(pipe, name)(*args, **kwargs) for name, args, kwargs in operations]
    results = []
    for handle in handles:
        try:
            results.append(("ok", await handle))
        except SynchroError as exc:
            results.append(("error", type(exc).__name__))
    return results


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_pipeline_gives_what_separate_calls_give(ctx: Any, seed: int) -> None:
    operations = mixed_operations(seed, 100)
    expected = await separately(ctx, operations)
    await ctx.clear()
    assert await pipelined(ctx, operations) == expected
    assert {outcome for outcome, _ in expected} == {"ok", "error"}  # both kinds were tried


async def test_operations_on_one_key_run_in_the_order_queued(ctx: Any) -> None:
    async with ctx.pipeline() as pipe:
        first = pipe.set("n", 5)
        added = pipe.increment("n", 2)
        old = pipe.replace("n", 1)
        again = pipe.increment("n")
        read = pipe.get("n")
    assert [await first, await added, await old, await again, await read] == [None, 7, 7, 2, 2]


async def test_one_failing_operation_fails_alone(ctx: Any) -> None:
    await ctx.set("text", "abc")
    async with ctx.pipeline() as pipe:
        before = pipe.increment("a")
        refused = pipe.increment("text")
        invalid = pipe.set("", 1)
        after = pipe.increment("a")
    assert await before == 1
    with pytest.raises(SynchroTypeError):
        await refused
    with pytest.raises(SynchroValueError):
        await invalid
    assert await after == 2
    assert await ctx.get("text") == "abc"


async def test_a_result_read_inside_the_block_raises(ctx: Any) -> None:
    async with ctx.pipeline() as pipe:
        handle = pipe.increment("n")
        with pytest.raises(SynchroError, match="has not run yet"):
            await handle
    assert await handle == 1


async def test_an_exception_inside_the_block_sends_nothing(ctx: Any) -> None:
    queued = []

    async def abandoned() -> None:
        async with ctx.pipeline() as pipe:
            queued.append(pipe)
            queued.append(pipe.increment("n"))
            pipe.set("other", 1)
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        await abandoned()
    pipe, handle = queued
    assert await ctx.get("n") is None
    assert await ctx.get("other") is None
    with pytest.raises(SynchroError, match="never ran"):
        await handle
    with pytest.raises(SynchroError, match="already ran"):
        pipe.increment("n")


async def test_an_empty_pipeline_sends_nothing(ctx: Any) -> None:
    async with ctx.pipeline() as pipe:
        pass
    assert len(pipe) == 0


@contextlib.asynccontextmanager
async def attached(
    app: Sanic[Any, Any], interface: BaseSynchroInterface, front_end: str
) -> AsyncIterator[Any]:
    """``interface`` on ``app``, as one front end (the blocking one with the async shape);
    its connections closed afterwards."""
    Synchro(app, interface=interface)
    aio = app.ctx.synchro
    try:
        yield aio if front_end == "async" else BlockingAsAsync(aio.sync)
    finally:
        interface.close()
        await interface.aclose()


def round_trips(interface: Any) -> Counter[int]:
    sizes: Counter[int] = interface.batch_sizes
    return sizes


@pytest.mark.parametrize("front_end", ["async", "blocking"])
@pytest.mark.parametrize("kind", NETWORK)
async def test_ten_increments_go_out_in_one_round_trip(
    kind: str,
    front_end: str,
    app: Sanic[Any, Any],
    make_interface: Callable[..., BaseSynchroInterface],
) -> None:
    """On every interface whose operations leave the process (the others run a pipeline's
    operations one after the other: there is no round trip to save)."""
    async with attached(app, make_interface(kind), front_end) as ctx:
        await ctx.set("warm", 1)  # the session is open
        before = round_trips(ctx.interface)
        async with ctx.pipeline() as pipe:
            handles = [pipe.increment(f"n{i}") for i in range(10)]
        assert [await handle for handle in handles] == [1] * 10
        new = round_trips(ctx.interface) - before
        if kind == "memcache-3":  # one round trip per server, each carrying that server's keys
            shares = Counter(ctx.interface.server_of(f"n{i}") for i in range(10))
            assert len(shares) > 1, shares
            assert all(new[share] >= 1 for share in shares.values()), (new, shares)
        else:
            assert new[10] == 1, new  # all ten in one round trip
        if kind not in ("memcache", "memcache-3"):  # memcached: a missing key takes two steps
            assert sum(new.values()) == 1, new


async def test_arguments_are_taken_when_queued_and_bad_ones_fail_alone(ctx: Any) -> None:
    items = {"a": 1}
    keys = (key for key in ["a", "b"])
    async with ctx.pipeline() as pipe:
        stored = pipe.update(items)
        lone = pipe.get_many("a")
        found = pipe.get_many(keys)
        not_keys = pipe.get_many(5)
        items["b"] = 2  # after queuing: not part of the update
    assert await stored is None
    with pytest.raises(SynchroTypeError):
        await lone
    assert await found == {"a": 1}
    with pytest.raises(SynchroTypeError):
        await not_keys
    assert await ctx.get("b") is None


@pytest.mark.parametrize("front_end", ["async", "blocking"])
@pytest.mark.parametrize("kind", NETWORK)
async def test_a_long_pipeline_goes_out_max_batch_at_a_time(
    kind: str,
    front_end: str,
    app: Sanic[Any, Any],
    make_interface: Callable[..., BaseSynchroInterface],
) -> None:
    async with attached(app, make_interface(kind, max_batch=50), front_end) as ctx:
        await ctx.set("warm", 1)
        before = round_trips(ctx.interface)
        count = 360 if kind == "memcache-3" else 120  # three servers: over 50 keys each
        async with ctx.pipeline() as pipe:
            handles = [pipe.increment(f"n{i}") for i in range(count)]
        assert [await handle for handle in handles] == [1] * count
        new = round_trips(ctx.interface) - before
        assert max(new) == 50, new  # never more than max_batch in one round trip
        assert new[50] >= 2, new  # (memcached: a missing key's increment takes two steps)


@pytest.mark.parametrize("kind", NETWORK)
async def test_a_pipeline_cancelled_mid_way_leaves_a_working_connection(
    kind: str, app: Sanic[Any, Any], make_interface: Callable[..., BaseSynchroInterface]
) -> None:
    """Cancelled while its round trip is in flight (or before it left): its operations are
    abandoned, none is sent twice, and the next operations get their own answers."""
    async with attached(app, make_interface(kind), "async") as ctx:
        await ctx.set("warm", 1)
        for passes in range(6):  # cancelled after 0, 1, ... passes of the loop

            async def run() -> None:
                async with ctx.pipeline() as pipe:
                    for i in range(10):
                        pipe.increment(f"c{i}")

            task = asyncio.ensure_future(run())
            for _ in range(passes):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        values = [await ctx.get(f"c{i}", 0) for i in range(10)]
        assert all(0 <= value <= 6 for value in values), values  # never more than once each
        assert await ctx.increment("after") == 1
        async with ctx.pipeline() as pipe:
            handles = [pipe.increment(f"c{i}") for i in range(10)]
        assert [await handle for handle in handles] == [value + 1 for value in values]
