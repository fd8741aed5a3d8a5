"""Per-operation benchmarks: our async front end against the raw client doing the same work.

Every interface runs get, set, increment, set_default, compare_and_set and a lock
acquire+release; "raw" issues the same commands (or calls the same Store method, or runs
the same Lua script) on the same connection settings, with keys and bytes prepared ahead.
Every row is the median latency of single calls, the two variants taking turns call by
call (:func:`~.timing.interleaved_latency`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from multiprocessing import Manager
from typing import Any

import aiomcache
import asyncio_redis
import redis.asyncio as redis_asyncio
from sanic import Sanic

from sanic_synchro_ctx import AIORedis, AsyncioRedis, InMemory, Memcache, Synchro, SyncManager
from sanic_synchro_ctx.interfaces.redis.scripts import COMPARE_AND_SET, LOCK_RELEASE
from sanic_synchro_ctx.interfaces.syncmanager.client import BlockingClient
from sanic_synchro_ctx.interfaces.syncmanager.process import ManagerProcess

from .timing import Ratio, awaiting, interleaved_latency

Op = Callable[[], Awaitable[object]]
DOC = {"user": "ada", "roles": ["admin", "dev"], "visits": 12}
DOC_BYTES = b'{"roles":["admin","dev"],"user":"ada","visits":12}'


class WireStore:
    """The manager's Store methods called through its plain client: each one round trip,
    no facade (no key checks, no JSON, no batching decisions)."""

    def __init__(self, client: BlockingClient) -> None:
        self._client = client

    def __getattr__(self, method: str) -> Callable[..., object]:
        call = self._client.call
        return lambda *args: call(method, *args)


def context(name: str, interface: Any) -> Any:
    app = Sanic(name)
    Synchro(app, interface=interface)
    return app.ctx.synchro


async def store_pairs(ctx: Any, store: Any) -> dict[str, tuple[Op, Op]]:
    """InMemory / SyncManager: the raw side calls the very same Store methods."""
    p = ctx.interface.prefix
    await ctx.set("v", DOC)
    lock_key = "\x00lock\x00" + p + "L"

    async def raw_lock() -> None:
        store.lock_acquire(lock_key, "token", 30.0)
        store.lock_release(lock_key, "token")

    async def ours_lock() -> None:
        async with ctx.lock("L"):
            pass

    async def wrap(value: object) -> object:
        return value

    return {
        "get": (lambda: ctx.get("v"), lambda: wrap(store.get(p + "v"))),
        "set": (lambda: ctx.set("w", DOC), lambda: wrap(store.set(p + "w", DOC_BYTES, None))),
        "increment": (lambda: ctx.increment("n"), lambda: wrap(store.increment(p + "n", 1))),
        "set_default": (
            lambda: ctx.set_default({"d": DOC}),
            lambda: wrap(store.add_many([(p + "d", DOC_BYTES)], None)),
        ),
        "compare_and_set": (
            lambda: ctx.compare_and_set("v", DOC, DOC),
            lambda: wrap(store.compare_and_set(p + "v", DOC_BYTES, DOC_BYTES, None)),
        ),
        "lock acquire+release": (ours_lock, raw_lock),
    }


async def aioredis_pairs(ctx: Any, client: Any) -> dict[str, tuple[Op, Op]]:
    p = ctx.interface.prefix.encode()
    await ctx.set("v", DOC)
    cas = client.register_script(COMPARE_AND_SET)
    release = client.register_script(LOCK_RELEASE)
    lock_key = b"\x00lock\x00" + p + b"L"

    async def raw_lock() -> None:
        await client.set(lock_key, "token", nx=True, px=30_000)
        await release(keys=[lock_key], args=["token"])

    async def ours_lock() -> None:
        async with ctx.lock("L"):
            pass

    return {
        "get": (lambda: ctx.get("v"), lambda: client.get(p + b"v")),
        "set": (lambda: ctx.set("w", DOC), lambda: client.set(p + b"w", DOC_BYTES)),
        "increment": (lambda: ctx.increment("n"), lambda: client.incrby(p + b"n", 1)),
        "set_default": (
            lambda: ctx.set_default({"d": DOC}),
            lambda: client.set(p + b"d", DOC_BYTES, nx=True, get=True),
        ),
        "compare_and_set": (
            lambda: ctx.compare_and_set("v", DOC, DOC),
            lambda: cas(keys=[p + b"v"], args=[DOC_BYTES, DOC_BYTES, ""]),
        ),
        "lock acquire+release": (ours_lock, raw_lock),
    }


async def asyncio_redis_pairs(ctx: Any, pool: Any) -> dict[str, tuple[Op, Op]]:
    p = ctx.interface.prefix.encode()
    await ctx.set("v", DOC)
    cas = await pool.register_script(COMPARE_AND_SET)
    release = await pool.register_script(LOCK_RELEASE)
    lock_key = b"\x00lock\x00" + p + b"L"

    async def raw_cas() -> object:
        reply = await cas.run(keys=[p + b"v"], args=[DOC_BYTES, DOC_BYTES, b""])
        return await reply.return_value()

    async def raw_lock() -> None:
        await pool.set(lock_key, b"token", pexpire=30_000, only_if_not_exists=True)
        reply = await release.run(keys=[lock_key], args=[b"token"])
        await reply.return_value()

    async def ours_lock() -> None:
        async with ctx.lock("L"):
            pass

    return {
        "get": (lambda: ctx.get("v"), lambda: pool.get(p + b"v")),
        "set": (lambda: ctx.set("w", DOC), lambda: pool.set(p + b"w", DOC_BYTES)),
        "increment": (lambda: ctx.increment("n"), lambda: pool.incrby(p + b"n", 1)),
        "set_default": (
            lambda: ctx.set_default({"d": DOC}),
            lambda: pool.set(p + b"d", DOC_BYTES, only_if_not_exists=True),
        ),
        "compare_and_set": (lambda: ctx.compare_and_set("v", DOC, DOC), raw_cas),
        "lock acquire+release": (ours_lock, raw_lock),
    }


async def memcache_pairs(ctx: Any, client: Any) -> dict[str, tuple[Op, Op]]:
    await ctx.set("v", DOC)
    await client.set(b"raw:v", DOC_BYTES)
    await client.set(b"raw:n", b"0")

    async def raw_set_default() -> object:
        if not await client.add(b"raw:d", DOC_BYTES):
            return await client.get(b"raw:d")
        return DOC_BYTES

    async def raw_cas() -> object:
        value, token = await client.gets(b"raw:v")
        return value == DOC_BYTES and await client.cas(b"raw:v", DOC_BYTES, token)

    async def raw_lock() -> None:
        await client.add(b"raw:lock", b"token", 31)
        _, token = await client.gets(b"raw:lock")
        await client.cas(b"raw:lock", b"", token, 2_592_001)

    async def ours_lock() -> None:
        async with ctx.lock("L"):
            pass

    return {
        "get": (lambda: ctx.get("v"), lambda: client.get(b"raw:v")),
        "set": (lambda: ctx.set("w", DOC), lambda: client.set(b"raw:w", DOC_BYTES)),
        "increment": (lambda: ctx.increment("n"), lambda: client.incr(b"raw:n", 1)),
        "set_default": (lambda: ctx.set_default({"d": DOC}), raw_set_default),
        "compare_and_set": (lambda: ctx.compare_and_set("v", DOC, DOC), raw_cas),
        "lock acquire+release": (ours_lock, raw_lock),
    }


async def compare(
    group: str, pairs: dict[str, tuple[Op, Op]], *, count: int, target: str | None
) -> list[Ratio]:
    results = []
    for name, (ours, raw) in pairs.items():
        mine, theirs = await interleaved_latency(ours, raw, count=count)
        results.append(Ratio(group, name, mine, theirs, "µs/op", target))
    return results


async def blocking_vs_async(group: str, ctx: Any, *, count: int) -> Ratio:
    """increment through ``.sync`` (called on the loop's thread, as a def handler does)
    against the async front end."""
    blocking = ctx.sync
    mine, theirs = await interleaved_latency(
        awaiting(lambda: blocking.increment("b")), lambda: ctx.increment("b"), count=count
    )
    return Ratio(
        "blocking / async front end", f"{group} increment", mine, theirs, "µs/op", "<= 1.5x"
    )


async def lone_operations(group: str, on: Any, off: Any, *, count: int) -> list[Ratio]:
    """Operations issued one at a time (no concurrency), batching on against off: a lone
    operation must go out at once, with no added latency."""
    await on.set("lone-v", DOC)
    await off.set("lone-v", DOC)
    pairs: dict[str, tuple[Op, Op]] = {
        "get": (lambda: on.get("lone-v"), lambda: off.get("lone-v")),
        "increment": (lambda: on.increment("lone-n"), lambda: off.increment("lone-n")),
    }
    results = await compare(
        "batching on / off, one operation at a time", pairs, count=count, target="<= 1.10x"
    )
    for ratio in results:
        ratio.name = f"{group} {ratio.name}"
    return results


async def four_round_trip_increment(count: int, ctx: Any) -> Ratio:
    """SyncManager.increment against lock+get+set+unlock through plain manager proxies."""
    manager = Manager()
    try:
        lock, data = manager.Lock(), manager.dict()
        data["n"] = 0

        def naive() -> None:
            lock.acquire()
            try:
                data["n"] = data.get("n", 0) + 1
            finally:
                lock.release()

        blocking = ctx.sync
        mine, theirs = await interleaved_latency(
            awaiting(lambda: blocking.increment("naive")), awaiting(naive), count=count
        )
        return Ratio(
            "SyncManager increment / lock+get+set+unlock proxies",
            "increment",
            mine,
            theirs,
            "µs/op",
            "<= 0.33x",
            extra="target: >= 3x faster",
        )
    finally:
        manager.shutdown()


async def run(
    redis_url: str, cluster_url: str | None, memcached_port: int, quick: bool
) -> list[Ratio]:
    calls = 900 if quick else 5_000  # single calls of each variant per row
    results: list[Ratio] = []
    tag = f"b{os.getpid()}"

    memory = context(f"{tag}_memory", InMemory())
    results += await compare(
        "InMemory (vs the Store called directly)",
        await store_pairs(memory, memory.interface._store),
        count=calls * 5,
        target=None,
    )

    process = ManagerProcess.start(watch_pid=os.getpid())
    try:
        synced = context(f"{tag}_sync", SyncManager(process.address, process.authkey))
        raw_client = WireStore(BlockingClient(process.address, process.authkey, timeout=None))
        results += await compare(
            "SyncManager (vs the same Store methods called over the wire)",
            await store_pairs(synced, raw_client),
            count=calls,
            target=None,
        )
        results.append(await four_round_trip_increment(calls, synced))
        results.append(await blocking_vs_async("SyncManager", synced, count=calls))
        unbatched = SyncManager(process.address, process.authkey, batching=False)
        results += await lone_operations(
            "SyncManager",
            synced,
            context(f"{tag}_sync_off", unbatched),
            count=calls,
        )
    finally:
        process.stop()
    results.append(await blocking_vs_async("InMemory", memory, count=calls * 5))

    client = redis_asyncio.Redis.from_url(redis_url)
    aioredis = context(f"{tag}_aioredis", AIORedis(client))
    results += await compare(
        "AIORedis (vs redis.asyncio)",
        await aioredis_pairs(aioredis, client),
        count=calls,
        target="<= 1.10x",
    )
    results.append(await blocking_vs_async("AIORedis", aioredis, count=calls))
    unbatched_redis = context(f"{tag}_aioredis_off", AIORedis.from_url(redis_url, batching=False))
    results += await lone_operations("AIORedis", aioredis, unbatched_redis, count=calls)
    await unbatched_redis.interface.aclose()
    await aioredis.interface.aclose()
    await client.aclose()

    url = redis_asyncio.Redis.from_url(redis_url).connection_pool.connection_kwargs
    pool = await asyncio_redis.Pool.create(
        host=url["host"],
        port=url["port"],
        poolsize=4,
        encoder=asyncio_redis.encoders.BytesEncoder(),
    )
    other = context(f"{tag}_asyncio_redis", AsyncioRedis(url["host"], url["port"], poolsize=4))
    results += await compare(
        "AsyncioRedis (vs asyncio_redis)",
        await asyncio_redis_pairs(other, pool),
        count=calls,
        target="<= 1.10x",
    )
    results.append(await blocking_vs_async("AsyncioRedis", other, count=calls))
    unbatched_other = context(
        f"{tag}_asyncio_redis_off",
        AsyncioRedis(url["host"], url["port"], poolsize=4, batching=False),
    )
    results += await lone_operations("AsyncioRedis", other, unbatched_other, count=calls)
    await unbatched_other.interface.aclose()
    await other.interface.aclose()
    pool.close()

    raw_mc = aiomcache.Client("127.0.0.1", memcached_port, pool_size=4)
    mc = context(f"{tag}_memcache", Memcache(port=memcached_port, pool_size=4))
    results += await compare(
        "Memcache (vs aiomcache)",
        await memcache_pairs(mc, raw_mc),
        count=calls,
        target="<= 1.10x",
    )
    results.append(await blocking_vs_async("Memcache", mc, count=calls))
    unbatched_mc = context(
        f"{tag}_memcache_off", Memcache(port=memcached_port, pool_size=4, batching=False)
    )
    results += await lone_operations("Memcache", mc, unbatched_mc, count=calls)
    await unbatched_mc.interface.aclose()
    await mc.interface.aclose()
    await raw_mc.close()
    return results


def main(redis_url: str, cluster_url: str | None, memcached_port: int, quick: bool) -> list[Ratio]:
    return asyncio.run(run(redis_url, cluster_url, memcached_port, quick))
