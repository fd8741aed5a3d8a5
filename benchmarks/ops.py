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

from sanic_synchro_ctx import (
    LMDB,
    AIORedis,
    AsyncioRedis,
    InMemory,
    Memcache,
    Synchro,
    SyncManager,
)
from sanic_synchro_ctx.checks import check_key
from sanic_synchro_ctx.interfaces.base import RATE_MARK
from sanic_synchro_ctx.interfaces.memcache.keys import KeyMap
from sanic_synchro_ctx.interfaces.redis.scripts import COMPARE_AND_SET, LOCK_RELEASE, encode_key
from sanic_synchro_ctx.interfaces.syncmanager.client import BlockingClient
from sanic_synchro_ctx.interfaces.syncmanager.process import ManagerProcess

from .memory import manager_memory
from .timing import Ratio, awaiting, blockwise_latency, interleaved_latency

Op = Callable[[], Awaitable[object]]
DOC = {"user": "ada", "roles": ["admin", "dev"], "visits": 12}
DOC_BYTES = b'{"roles":["admin","dev"],"user":"ada","visits":12}'
#: A budget no run of the benchmark exhausts: every call is allowed (and writes).
RATE = {"limit": 10**9, "per": 1.0}

#: GCRA as a user would write it by hand for redis.asyncio (the server's clock, one key).
HAND_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit, per = tonumber(ARGV[1]), tonumber(ARGV[2])
local interval = per / limit
local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local ahead = tat - now + interval
if ahead > per then
  return {0, math.ceil((ahead - per) * 1000)}
end
redis.call('SET', KEYS[1], string.format('%.6f', tat + interval), 'PX',
           math.max(1, math.ceil(ahead * 1000)))
return {1, 0}
"""


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


async def wrap(value: object) -> object:
    """A Store call's result as an awaitable, as the facade's operations are."""
    return value


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

    rate_key = RATE_MARK + p + "r"
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
        "rate_limit": (
            lambda: ctx.rate_limit("r", **RATE),
            lambda: wrap(store.rate_limit(rate_key, RATE["limit"], RATE["per"], 1)),
        ),
    }


async def rate_limit_vs_increment(ctx: Any, *, count: int) -> Ratio:
    """SyncManager: a rate-limit step is one round trip, like an increment."""
    mine, theirs = await interleaved_latency(
        lambda: ctx.rate_limit("rr", **RATE), lambda: ctx.increment("ri"), count=count
    )
    return Ratio("SyncManager rate_limit / increment", "one round trip each", mine, theirs,
                 "µs/op", "<= 1.10x")  # fmt: skip


async def lmdb_rows(lmdb: Any, synced: Any, *, count: int) -> list[Ratio]:
    """LMDB at shared-memory speed: µs budgets, and against SyncManager (the embedded
    default it competes with for one machine)."""
    for ctx in (lmdb, synced):
        await ctx.set("small", 12)
    results = []
    pairs = {
        "get": (lambda: lmdb.get("small"), lambda: synced.get("small")),
        "increment": (lambda: lmdb.increment("n"), lambda: synced.increment("n")),
    }
    for name, (ours, theirs) in pairs.items():
        mine, base, ratios = await blockwise_latency(ours, theirs, count=count)
        results.append(Ratio("LMDB / SyncManager per operation (runs of calls)", name, mine,
                             base, "µs/op", "<= 0.10x", extra="target: >= 10x faster",
                             pairs=ratios))  # fmt: skip
    budgets = {"get": (lambda: lmdb.get("small"), 3.0), "increment": (lambda: lmdb.increment("n"), 5.0)}  # fmt: skip  # noqa: E501
    for name, (call, budget) in budgets.items():
        mine, _ = await interleaved_latency(call, call, count=count * 5)
        results.append(Ratio("LMDB against its budget", name, mine, budget, "µs/op",
                             "<= 1.00x", extra=f"target: <= {budget:g} µs"))  # fmt: skip
    return results


async def aioredis_pairs(ctx: Any, client: Any) -> dict[str, tuple[Op, Op]]:
    p = ctx.interface.prefix.encode()
    await ctx.set("v", DOC)
    cas = client.register_script(COMPARE_AND_SET)
    release = client.register_script(LOCK_RELEASE)
    gcra = client.register_script(HAND_GCRA)
    lock_key = b"\x00lock\x00" + p + b"L"
    rate_key = b"hand-gcra:" + p

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
        "rate_limit (vs a hand-written GCRA script)": (
            lambda: ctx.rate_limit("r", **RATE),
            lambda: gcra(keys=[rate_key], args=[RATE["limit"], RATE["per"]]),
        ),
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


#: The facade against the raw client doing the same work: the simple commands may cost at
#: most 5% more, the others (scripts, several keys) 10%.
NETWORK_TARGETS = {"get": "<= 1.05x", "set": "<= 1.05x", "increment": "<= 1.05x"}
#: InMemory against its Store: at most twice the Store's own time (rate_limit: reported).
MEMORY_TARGETS: dict[str, str | None] = {"rate_limit": None}


async def compare(
    group: str,
    pairs: dict[str, tuple[Op, Op]],
    *,
    count: int,
    target: str | None,
    targets: dict[str, str | None] | None = None,
) -> list[Ratio]:
    """One row per pair; ``targets`` gives some operations a target other than ``target``."""
    results = []
    for name, (ours, raw) in pairs.items():
        mine, theirs = await interleaved_latency(ours, raw, count=count)
        own = (targets or {}).get(name, target)
        results.append(Ratio(group, name, mine, theirs, "µs/op", own))
    return results


async def blocking_vs_async(group: str, ctx: Any, *, count: int) -> Ratio:
    """increment through ``.sync`` (called on the loop's thread, as a def handler does)
    against the async front end."""
    blocking = ctx.sync
    mine, theirs = await interleaved_latency(
        awaiting(lambda: blocking.increment("b")), lambda: ctx.increment("b"), count=count
    )
    return Ratio(
        "blocking / async front end", f"{group} increment", mine, theirs, "µs/op", "<= 1.2x"
    )


async def pipeline_vs_separate(group: str, ctx: Any, *, count: int) -> Ratio:
    """Blocking front end: 10 increments in one pipeline against 10 separate calls."""
    blocking = ctx.sync
    keys = [f"p{i}" for i in range(10)]

    def pipelined() -> None:
        with blocking.pipeline() as pipe:
            for key in keys:
                pipe.increment(key)

    def separately() -> None:
        for key in keys:
            blocking.increment(key)

    mine, theirs = await interleaved_latency(awaiting(pipelined), awaiting(separately), count=count)
    return Ratio("blocking pipeline / separate calls", f"{group} 10 increments", mine, theirs,
                 "µs/10 ops", "<= 0.20x", extra="target: >= 5x faster")  # fmt: skip


async def raw_batch_vs_separate(store: WireStore, prefix: str, *, count: int) -> Ratio:
    """What the pipeline row can reach at most: the manager's own batch call of 10 Store
    increments against 10 Store calls, over the same wire with no facade at all."""
    calls = [("increment", (f"{prefix}q{i}", 1, None)) for i in range(10)]

    def batched() -> None:
        store.batch(calls)

    def separately() -> None:
        for _, args in calls:
            store.increment(*args)

    mine, theirs = await interleaved_latency(awaiting(batched), awaiting(separately), count=count)
    return Ratio("raw wire: one batch / separate calls (the pipeline row's floor)",
                 "SyncManager 10 increments", mine, theirs, "µs/10 ops", None)  # fmt: skip


async def memory_floor(ctx: Any, *, count: int) -> list[Ratio]:
    """What the InMemory rows can reach at most: a hand-written get and set doing only what
    any facade must (check the key, JSON with the interface's own serializer, the Store
    call; no statistics, no front end), against the Store called directly."""
    interface = ctx.interface
    store, prefix, serializer = interface._store, interface.prefix, interface._serializer
    await ctx.set("v", DOC)

    async def least_get(key: str) -> object:
        data = store.get(prefix + check_key(key))
        return None if data is None else serializer.loads(data)

    async def least_set(key: str, value: object) -> None:
        store.set(prefix + check_key(key), serializer.dumps(value), None)

    pairs = {
        "get": (lambda: least_get("v"), lambda: wrap(store.get(prefix + "v"))),
        "set": (
            lambda: least_set("w", DOC),
            lambda: wrap(store.set(prefix + "w", DOC_BYTES, None)),
        ),
    }
    group = "InMemory floor: key check + JSON + Store call (the rows' floor)"
    return await compare(group, pairs, count=count, target=None)


#: A raw call of a floor row: (command, key, data) -> the client's awaitable.
Issue = Callable[[str, Any, bytes | None], Awaitable[object]]


def issued_by(get: Any, set_: Any, increment: Any) -> Issue:
    """A floor row's raw call over one client's get, set and increment-by-one."""

    def issue(command: str, key: Any, data: bytes | None) -> Awaitable[object]:
        if command == "get":
            return get(key)
        if command == "set":
            return set_(key, data)
        return increment(key, 1)

    return issue


def network_floor_pairs(
    ctx: Any, issue: Issue, encode: Callable[[str], Any]
) -> dict[str, tuple[Op, Op]]:
    """get, set and increment written by hand over a raw client, doing only what any
    facade must: check the key, add the namespace and encode it, JSON with the interface's
    own serializer, the raw call (``issue(command, key, data)``); against the bare raw
    call. ``encode`` maps a full key to the client's key (the bare side's are encoded
    ahead)."""
    prefix, serializer = ctx.interface.prefix, ctx.interface._serializer

    async def least_get(key: str) -> object:
        data = await issue("get", encode(prefix + check_key(key)), None)
        return None if data is None else serializer.loads(data)

    async def least_set(key: str, value: object) -> None:
        await issue("set", encode(prefix + check_key(key)), serializer.dumps(value))

    async def least_increment(key: str) -> object:
        return await issue("increment", encode(prefix + check_key(key)), None)

    bare = {name: encode(prefix + name) for name in ("v", "w", "n")}
    return {
        "get": (lambda: least_get("v"), lambda: issue("get", bare["v"], None)),
        "set": (lambda: least_set("w", DOC), lambda: issue("set", bare["w"], DOC_BYTES)),
        "increment": (lambda: least_increment("n"), lambda: issue("increment", bare["n"], None)),
    }


async def network_floor(
    group: str, ctx: Any, issue: Issue, encode: Callable[[str], Any], *, count: int
) -> list[Ratio]:
    """What a network group's get, set and increment rows can reach at most (no
    statistics, batching, cancellation checks, or front end): see :func:`network_floor_pairs`."""
    await issue("set", encode(ctx.interface.prefix + "v"), DOC_BYTES)
    await issue("set", encode(ctx.interface.prefix + "n"), b"0")
    title = f"{group} floor: key check + JSON + raw call (the rows' floor)"
    return await compare(title, network_floor_pairs(ctx, issue, encode), count=count, target=None)


async def raw_pipeline_vs_separate(url: str, *, count: int) -> Ratio:
    """What the pipeline row can reach at most on Redis: redis.asyncio itself, run to
    completion on an event loop of the calling thread as the blocking front end does, one
    pipeline of 10 INCRBY against 10 awaited INCRBY."""
    loop = asyncio.new_event_loop()
    client = redis_asyncio.Redis.from_url(url)
    keys = [f"raw-q{i}" for i in range(10)]

    async def pipelined() -> None:
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.incrby(key, 1)
            await pipe.execute()

    async def separately() -> None:
        for key in keys:
            await client.incrby(key, 1)

    outer = asyncio.events._get_running_loop()
    asyncio.events._set_running_loop(None)  # the caller's loop aside, as the bridge does
    try:
        mine, theirs = await interleaved_latency(
            awaiting(lambda: loop.run_until_complete(pipelined())),
            awaiting(lambda: loop.run_until_complete(separately())),
            count=count,
        )
        loop.run_until_complete(client.aclose())
    finally:
        asyncio.events._set_running_loop(outer)
        loop.close()
    return Ratio("raw client: one pipeline / separate calls (the pipeline row's floor)",
                 "redis.asyncio 10 increments", mine, theirs, "µs/10 ops", None)  # fmt: skip


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


async def stats_on_off(
    group: str, on: Any, off: Any, *, count: int, target: str | None
) -> list[Ratio]:
    """The same operations with ``interface.stats()`` recording (the default) and without."""
    off.interface.stats_enabled = False
    await on.set("stats-v", DOC)
    await off.set("stats-v", DOC)
    pairs: dict[str, tuple[Op, Op]] = {
        "get": (lambda: on.get("stats-v"), lambda: off.get("stats-v")),
        "increment": (lambda: on.increment("stats-n"), lambda: off.increment("stats-n")),
    }
    results = await compare("statistics on / off", pairs, count=count, target=target)
    for ratio in results:
        ratio.name = f"{group} {ratio.name}"
    return results


async def sharded_get_many(group: str, many: Any, one: Any, *, count: int) -> Ratio:
    """get_many of 100 keys over three memcached servers (split per server, in parallel)
    against the same on one server."""
    keys = [f"gm{i}" for i in range(100)]
    await many.update({key: DOC for key in keys})
    await one.update({key: DOC for key in keys})
    mine, theirs = await interleaved_latency(
        lambda: many.get_many(keys), lambda: one.get_many(keys), count=count
    )
    return Ratio(group, "get_many of 100 keys", mine, theirs, "µs/op", "<= 1.2x")


async def sentinel_vs_plain(sentinels: list[tuple[str, int]], *, count: int) -> list[Ratio]:
    """AIORedis through a Sentinel-managed client against a plain client of the same master."""
    tag = f"b{os.getpid()}"
    watched = context(f"{tag}_sentinel", AIORedis.from_sentinel(sentinels, "main"))
    pool = watched.interface._template.connection_pool
    host, port = await pool.get_master_address()
    plain = context(f"{tag}_sentinel_plain", AIORedis.from_url(f"redis://{host}:{port}/0"))
    await watched.set("s-v", DOC)
    await plain.set("s-v", DOC)
    pairs: dict[str, tuple[Op, Op]] = {
        "get": (lambda: watched.get("s-v"), lambda: plain.get("s-v")),
        "increment": (lambda: watched.increment("s-n"), lambda: plain.increment("s-n")),
    }
    try:
        return await compare(
            "AIORedis: Sentinel-managed / plain client of the same master",
            pairs,
            count=count,
            target="<= 1.10x",
        )
    finally:
        await watched.interface.aclose()
        await plain.interface.aclose()


async def run(
    redis_url: str,
    cluster_url: str | None,
    memcached_ports: list[int],
    sentinels: list[tuple[str, int]],
    quick: bool,
) -> list[Ratio]:
    memcached_port = memcached_ports[0]
    calls = 900 if quick else 5_000  # single calls of each variant per row
    results: list[Ratio] = []
    tag = f"b{os.getpid()}"

    memory = context(f"{tag}_memory", InMemory())
    results += await compare(
        "InMemory (vs the Store called directly)",
        await store_pairs(memory, memory.interface._store),
        count=calls * 5,
        target="<= 2.0x",
        targets=MEMORY_TARGETS,
    )
    results += await memory_floor(memory, count=calls * 5)

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
        results.append(await rate_limit_vs_increment(synced, count=calls))
        lmdb = context(f"{tag}_lmdb", LMDB())
        lmdb.interface.start()
        results += await lmdb_rows(lmdb, synced, count=calls)
        lmdb.interface.stop()
        results.append(await blocking_vs_async("SyncManager", synced, count=calls))
        results.append(await pipeline_vs_separate("SyncManager", synced, count=calls // 5))
        results.append(
            await raw_batch_vs_separate(raw_client, synced.interface.prefix, count=calls // 5)
        )
        unbatched = SyncManager(process.address, process.authkey, batching=False)
        results += await lone_operations(
            "SyncManager",
            synced,
            context(f"{tag}_sync_off", unbatched),
            count=calls,
        )
        quiet = SyncManager(process.address, process.authkey)
        results += await stats_on_off(
            "SyncManager",
            synced,
            context(f"{tag}_sync_quiet", quiet),
            count=calls,
            target="<= 1.05x",
        )
        results.append(await manager_memory(synced, process.pid))
    finally:
        process.stop()
    results.append(await blocking_vs_async("InMemory", memory, count=calls * 5))
    results += await stats_on_off(
        "InMemory", memory, context(f"{tag}_memory_off", InMemory()), count=calls * 5, target=None
    )

    client = redis_asyncio.Redis.from_url(redis_url)
    aioredis = context(f"{tag}_aioredis", AIORedis(client))
    results += await compare(
        "AIORedis (vs redis.asyncio)",
        await aioredis_pairs(aioredis, client),
        count=calls,
        target="<= 1.10x",
        targets=NETWORK_TARGETS,
    )
    results += await network_floor(
        "AIORedis",
        aioredis,
        issued_by(client.get, client.set, client.incrby),
        encode_key,
        count=calls,
    )
    results.append(await blocking_vs_async("AIORedis", aioredis, count=calls))
    results.append(await pipeline_vs_separate("AIORedis", aioredis, count=calls // 5))
    results.append(await raw_pipeline_vs_separate(redis_url, count=calls // 5))
    unbatched_redis = context(f"{tag}_aioredis_off", AIORedis.from_url(redis_url, batching=False))
    results += await lone_operations("AIORedis", aioredis, unbatched_redis, count=calls)
    await unbatched_redis.interface.aclose()
    results += await sentinel_vs_plain(sentinels, count=calls)
    quiet_redis = context(f"{tag}_aioredis_quiet", AIORedis.from_url(redis_url))
    results += await stats_on_off("AIORedis", aioredis, quiet_redis, count=calls, target="<= 1.05x")
    await quiet_redis.interface.aclose()
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
        targets=NETWORK_TARGETS,
    )
    results += await network_floor(
        "AsyncioRedis",
        other,
        issued_by(pool.get, pool.set, pool.incrby),
        encode_key,
        count=calls,
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
        targets=NETWORK_TARGETS,
    )
    keys = KeyMap(mc.interface.prefix)  # data keys as in one generation, never changed
    results += await network_floor(
        "Memcache",
        mc,
        issued_by(raw_mc.get, raw_mc.set, raw_mc.incr),
        lambda full: keys.data_key(full, b"0"),
        count=calls,
    )
    results.append(await blocking_vs_async("Memcache", mc, count=calls))
    unbatched_mc = context(
        f"{tag}_memcache_off", Memcache(port=memcached_port, pool_size=4, batching=False)
    )
    results += await lone_operations("Memcache", mc, unbatched_mc, count=calls)
    spread = context(
        f"{tag}_memcache_3",
        Memcache(servers=[("127.0.0.1", port) for port in memcached_ports], pool_size=4),
    )
    results.append(
        await sharded_get_many("Memcache, 3 servers / 1 server", spread, mc, count=calls // 2)
    )
    await spread.interface.aclose()
    await unbatched_mc.interface.aclose()
    await mc.interface.aclose()
    await raw_mc.close()
    return results


def main(
    redis_url: str,
    cluster_url: str | None,
    memcached_ports: list[int],
    sentinels: list[tuple[str, int]],
    quick: bool,
) -> list[Ratio]:
    return asyncio.run(run(redis_url, cluster_url, memcached_ports, sentinels, quick))
