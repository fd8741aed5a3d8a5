"""The app the multi-process tests start with real ``sanic ... --workers N`` processes.

Environment knobs:
    SYNCHRO_INTERFACE   syncmanager (default), inmemory, aioredis, aioredis-cluster,
                        asyncio_redis, memcache
    SYNCHRO_REDIS_URL   the Redis server for the Redis interfaces
    SYNCHRO_SENTINELS   host:port,... of the Sentinels (aioredis-sentinel, service "main");
                        SYNCHRO_WAIT_REPLICAS its wait_replicas
    SYNCHRO_MEMCACHED   the memcached port for Memcache
    SYNCHRO_LMDB_PATH   LMDB's directory (unset: a private one for the app's lifetime)
    SYNCHRO_PREFIX      an explicit key prefix (tests sharing one Redis keep apart)
    SYNCHRO_APP_NAME    the app's name (default workers_app): its default namespace, and
                        the name its embedded manager is published under
    SYNCHRO_FACTORY=1   call init_app inside before_server_start (factory style)
    SYNCHRO_FORK=1      Sanic.start_method = "fork"
    SYNCHRO_LEADER=<s>  run the leader task "recorder" with this ttl (seconds)
    SYNCHRO_LEADER_LOG  also append "<run> <monotonic time>" to this file at each beat
    SYNCHRO_MESSAGES=1  run the on_message handler of channel "events" in every worker
    SYNCHRO_FAST_JSON=split  (SyncManager) even-numbered workers use orjson, odd ones not
    HOST, PORT, WORKERS when run as a script (app.run)
"""

import asyncio
import json as stdlib_json
import os
import time
from typing import Any
from urllib.parse import urlsplit

from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import json, text

from sanic_synchro_ctx import (
    LMDB,
    AIORedis,
    AsyncioRedis,
    InMemory,
    LockTimeout,
    Memcache,
    Synchro,
    SynchroInspector,
    SyncManager,
)
from sanic_synchro_ctx.context import BlockingSynchroContext, SynchroContext
from sanic_synchro_ctx.serializer import JSONSerializer
from tests.apps.readiness import add_main_ready

if os.environ.get("SYNCHRO_FORK") == "1":
    Sanic.start_method = "fork"

app = Sanic(  # the inspector is used with SANIC_INSPECTOR=1
    os.environ.get("SYNCHRO_APP_NAME", "workers_app"), inspector_class=SynchroInspector
)


def make_interface():
    kind = os.environ.get("SYNCHRO_INTERFACE", "syncmanager")
    prefix = os.environ.get("SYNCHRO_PREFIX")
    if kind == "inmemory":
        return InMemory()
    if kind == "aioredis":
        return AIORedis.from_url(os.environ["SYNCHRO_REDIS_URL"], prefix=prefix)
    if kind == "aioredis-sentinel":
        places = [place.split(":") for place in os.environ["SYNCHRO_SENTINELS"].split(",")]
        return AIORedis.from_sentinel(
            [(host, int(port)) for host, port in places],
            "main",
            prefix=prefix,
            wait_replicas=int(os.environ.get("SYNCHRO_WAIT_REPLICAS", "0")),
        )
    if kind == "aioredis-cluster":
        return AIORedis.from_url(os.environ["SYNCHRO_REDIS_URL"], cluster=True, prefix=prefix)
    if kind == "asyncio_redis":
        url = urlsplit(os.environ["SYNCHRO_REDIS_URL"])
        return AsyncioRedis(url.hostname or "127.0.0.1", url.port or 6379, prefix=prefix)
    if kind == "memcache":
        return Memcache(port=int(os.environ["SYNCHRO_MEMCACHED"]), prefix=prefix)
    if kind == "lmdb":
        return LMDB(os.environ.get("SYNCHRO_LMDB_PATH"), prefix=prefix)
    if kind != "syncmanager":  # never the default in its place: the test would not know
        raise ValueError(f"SYNCHRO_INTERFACE={kind!r}: no such interface in the workers' app")
    if os.environ.get("SYNCHRO_FAST_JSON") == "split":
        ident = os.environ.get("SANIC_WORKER_IDENTIFIER", "")  # "Srv  1" in worker 1
        fast = not ident or int(ident.split()[-1]) % 2 == 0
        return SyncManager(serializer=JSONSerializer(fast=fast))
    return SyncManager()


DEFAULTS = {"counter": 0}

if os.environ.get("SYNCHRO_FACTORY") == "1":
    synchro = Synchro(defaults=DEFAULTS)

    @app.before_server_start
    async def install(app: Sanic) -> None:
        synchro.init_app(app, interface=make_interface())

else:

    @app.before_server_start
    async def early(app: Sanic) -> None:
        # Registered before Synchro(app): Synchro's own listener must still run first.
        await app.ctx.synchro.increment("early_starts")

    synchro = Synchro(app, interface=make_interface(), defaults=DEFAULTS)


RESETS = {"seen": 0}  # per worker: how often it found the shared store replaced


@app.signal("synchro.store.reset")
async def store_reset() -> None:
    RESETS["seen"] += 1


@app.get("/resets")
async def resets(request: Request):
    return text(f"{RESETS['seen']} {os.getpid()}")


@app.after_server_start
async def seed(app: Sanic) -> None:
    ctx = app.ctx.synchro
    stored = await ctx.set_default({"seed": os.getpid()})
    await ctx.set(f"seen:{os.getpid()}", stored["seed"])
    while True:  # append this pid to the shared list (works where keys() does not)
        pids = await ctx.setdefault("pids", [])
        if await ctx.compare_and_set("pids", pids, [*pids, os.getpid()]):
            break
    await ctx.increment("workers_started")


add_main_ready(app)


@app.get("/interface")
async def interface_class(request: Request):
    """The class of the interface that serves this worker (tests check it is the one they
    asked for)."""
    return json({"pid": os.getpid(), "class": type(request.app.ctx.synchro.interface).__name__})


@app.get("/pid")
async def pid(request: Request):
    return text(str(os.getpid()))


@app.get("/terminate")
async def terminate(request: Request):
    """Stop the whole server the way Sanic's inspector does: a message its main loop reads.
    A SIGINT runs Sanic's handler inside whatever the main thread was doing; when that is a
    call on the worker-state dict proxy, the handler's own proxy calls read the earlier
    call's reply (TypeError in WorkerProcess.set_state, exit code 1). Tests that assert a
    clean exit code stop through here; the others stop with SIGINT, as a user would."""
    request.app.m.terminate()
    return text("terminating")


@app.get("/restart-workers")
async def restart_workers(request: Request):
    request.app.m.restart(all_workers=True)
    return text("restarting")


@app.get("/inc")
async def inc(request: Request):
    value = await request.ctx.synchro.increment("counter")
    return text(f"{value} {os.getpid()}")


@app.get("/inc-def")
def inc_def(request: Request):
    value = request.ctx.synchro.increment("counter")
    return text(f"{value} {os.getpid()}")


@app.get("/add/<by:int>")  # by may be negative
async def add(request: Request, by: int):
    return text(str(await request.ctx.synchro.increment("counter", by)))


@app.get("/count")
def count(request: Request):
    return text(str(request.ctx.synchro.counter))


@app.get("/count-pid")
def count_pid(request: Request):
    return text(f"{request.ctx.synchro.get('counter')} {os.getpid()}")


@app.get("/set/<key>/<value>")
async def set_value(request: Request, key: str, value: str):
    await request.ctx.synchro.set(key, value)
    return text(str(os.getpid()))


@app.get("/get/<key>")
def get_value(request: Request, key: str):
    return json({"value": request.ctx.synchro.get(key), "pid": os.getpid()})


@app.get("/seeds")
async def seeds(request: Request):
    ctx = request.ctx.synchro
    seen = await ctx.get_many([f"seen:{pid}" for pid in await ctx.get("pids", [])])
    return json(
        {
            "seed": await ctx.get("seed"),
            "seen": seen,
            # a worker may answer before any worker finished its after_server_start
            "started": await ctx.get("workers_started", 0),
            "early_starts": await ctx.get("early_starts"),
        }
    )


async def critical_section(ctx: SynchroContext) -> None:
    inside = await ctx.increment("inside")
    if inside != 1:
        await ctx.increment("violations")
    await asyncio.sleep(0.002)
    await ctx.decrement("inside")
    await ctx.increment("entered")


@app.get("/locked")
async def locked(request: Request):
    async with request.ctx.synchro.lock("section", ttl=30, timeout=60):
        await critical_section(request.ctx.synchro)
    return text("ok")


@app.get("/locked-def")
def locked_def(request: Request):
    ctx: BlockingSynchroContext = request.ctx.synchro
    with ctx.lock("section", ttl=30, timeout=60):
        inside = ctx.increment("inside")
        if inside != 1:
            ctx.increment("violations")
        ctx.decrement("inside")
        ctx.increment("entered")
    return text("ok")


@app.get("/unlocked")
async def unlocked(request: Request):
    await critical_section(request.ctx.synchro)
    return text("ok")


LOCK_STATS = ("violations", "entered", "inside")


@app.get("/lock-stats")
async def lock_stats(request: Request):
    found = await request.ctx.synchro.get_many(LOCK_STATS)
    return json({key: found.get(key, 0) for key in LOCK_STATS})


@app.get("/reset-locks")
async def reset_locks(request: Request):
    await request.ctx.synchro.delete(*LOCK_STATS)
    return text("ok")


@app.get("/kinds")
async def kinds(request: Request):
    return text(type(request.ctx.synchro).__name__)


@app.get("/kinds-def")
def kinds_def(request: Request):
    return text(type(request.ctx.synchro).__name__)


@app.get("/cas-append/<item:int>")
async def cas_append(request: Request, item: int):
    """Append ``item`` to a shared list by compare_and_set (retried until it lands)."""
    ctx = request.ctx.synchro
    while True:
        current = await ctx.setdefault("appended", [])
        if await ctx.compare_and_set("appended", current, [*current, item]):
            return text(str(os.getpid()))


@app.get("/set-ttl/<key>/<value>/<seconds:float>")
async def set_ttl(request: Request, key: str, value: str, seconds: float):
    await request.ctx.synchro.set(key, value, ttl=seconds)
    return text(str(os.getpid()))


@app.get("/ttl/<key>")
def ttl(request: Request, key: str):
    return json({"ttl": request.ctx.synchro.ttl(key), "pid": os.getpid()})


@app.get("/keys")
async def keys(request: Request):
    return json({"keys": sorted(await request.ctx.synchro.keys()), "pid": os.getpid()})


@app.get("/delete/<key>")
async def delete(request: Request, key: str):
    return json({"deleted": await request.ctx.synchro.delete(key), "pid": os.getpid()})


@app.get("/clear")
async def clear(request: Request):
    await request.ctx.synchro.clear()
    return text(str(os.getpid()))


# -- coordination ------------------------------------------------------------------------------


@app.get("/limited")
@synchro.limit((100, 10), key=lambda request: "shared-budget")
async def limited(request: Request):
    return text(str(os.getpid()))


@app.on_response
async def served_by(request: Request, response: Any) -> None:
    """Every answer names the worker that gave it (a refusal of Synchro.limit included)."""
    response.headers["X-Worker-Pid"] = str(os.getpid())


@app.get("/limited-day")
@synchro.limit("100/day", key=lambda request: "daily-budget")
def limited_day(request: Request):
    return text(str(os.getpid()))


@app.get("/semaphore")
async def semaphore(request: Request):
    ctx = request.ctx.synchro
    async with ctx.semaphore("pool", 3, ttl=30, timeout=60):
        inside = await ctx.increment("pool_inside")
        await ctx.increment(f"pool_level:{inside}")  # how often this many were inside
        await asyncio.sleep(0.05)
        await ctx.decrement("pool_inside")
    return text(str(os.getpid()))


@app.get("/renewed-hold/<seconds:float>")
async def renewed_hold(request: Request, seconds: float):
    """Hold lock "renewed" (ttl 1 s, auto_renew) for ``seconds``."""
    ctx = request.ctx.synchro
    async with ctx.lock("renewed", ttl=1.0, auto_renew=True, timeout=30) as lock:
        await ctx.set("renewed_holder", os.getpid())
        await asyncio.sleep(seconds)
        await ctx.delete("renewed_holder")
        lost = lock.lost
    return json({"pid": os.getpid(), "lost": lost})


@app.get("/renewed-contend")
def renewed_contend(request: Request):
    """One attempt at lock "renewed": "busy", or "taken" (and whether a holder was inside)."""
    ctx = request.ctx.synchro
    try:
        with ctx.lock("renewed", ttl=1.0, timeout=0):
            inside = ctx.get("renewed_holder")
    except LockTimeout:
        return json({"result": "busy", "pid": os.getpid()})
    return json({"result": "taken", "holder_inside": inside, "pid": os.getpid()})


@app.get("/fenced")
async def fenced(request: Request):
    ctx = request.ctx.synchro
    async with ctx.lock("fenced", ttl=10, timeout=60) as lock:
        order = await ctx.increment("fenced_order")
    return text(f"{order} {lock.token}")


def _beat(log: str, run: str) -> None:
    with open(log, "a") as handle:
        handle.write(f"{run} {time.monotonic()}\n")


if os.environ.get("SYNCHRO_LEADER"):

    @synchro.leader_task("recorder", ttl=float(os.environ["SYNCHRO_LEADER"]))
    async def recorder(app: Sanic) -> None:
        """Record this run (pid, start, last beat) under run:<n>; beat until cancelled."""
        ctx = app.ctx.synchro
        run = await ctx.increment("runs")
        record = {"pid": os.getpid(), "start": time.time(), "last": time.time()}
        log = os.environ.get("SYNCHRO_LEADER_LOG")  # also a file: it outlives any store
        ident = f"{os.getpid()}-{time.monotonic_ns()}"
        while True:
            record["last"] = time.time()
            if log:
                _beat(log, ident)
            await ctx.set(f"run:{run}", record)
            await asyncio.sleep(0.2)


@app.get("/runs")
async def runs(request: Request):
    ctx = request.ctx.synchro
    count = await ctx.get("runs", 0)
    found = await ctx.get_many([f"run:{n}" for n in range(1, count + 1)])
    return json({"runs": [found.get(f"run:{n}") for n in range(1, count + 1)]})


if os.environ.get("SYNCHRO_MESSAGES") == "1":
    HEARD: dict[str, Any] = {"count": 0, "last": {}, "in_order": True}

    @synchro.on_message("events")
    async def heard(app: Sanic, message: Any) -> None:
        """Check each publisher's messages come in order, once each; record it shared."""
        if message.get("probe"):
            return
        publisher, n = message["publisher"], message["n"]
        if n != HEARD["last"].get(publisher, -1) + 1:
            HEARD["in_order"] = False  # a gap, a repeat or a swap
        HEARD["last"][publisher] = n
        HEARD["count"] += 1
        record = {"count": HEARD["count"], "in_order": HEARD["in_order"], "last": HEARD["last"]}
        await app.ctx.synchro.set(f"heard:{os.getpid()}", record)


@app.get("/probe")
async def probe(request: Request):
    """How many subscribers a message on "events" reaches now (probes are ignored)."""
    return text(str(await request.ctx.synchro.publish("events", {"probe": True})))


@app.get("/publish/<count:int>")
async def publish(request: Request, count: int):
    """Publish ``count`` numbered messages on "events", one after the other."""
    ctx = request.ctx.synchro
    publisher = f"{os.getpid()}-{time.monotonic_ns()}"
    receivers = [
        await ctx.publish("events", {"publisher": publisher, "n": n}) for n in range(count)
    ]
    return json({"publisher": publisher, "receivers": sorted(set(receivers))})


@app.get("/heard")
async def heard_by_workers(request: Request):
    """Each worker's record of what it heard, by its key ``heard:<pid>``."""
    ctx = request.ctx.synchro
    return json(await ctx.get_many([key async for key in ctx.scan("heard:*")]))


@app.get("/raise-teapot")
@synchro.limit("1000/second", key=lambda request: "teapot")
async def raise_teapot(request: Request):
    raise SanicException("short and stout", status_code=418, quiet=True)


if __name__ == "__main__":
    app.run(
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ["PORT"]),
        workers=int(os.environ.get("WORKERS", "2")),
        access_log=False,
    )


@app.post("/json/<operation:set|compare_and_set>")
async def json_operation(request: Request, operation: str):
    """Runs only in a worker whose serializer uses orjson as ``fast`` asks (409 elsewhere,
    untouched). Values travel as JSON text, decoded here by the standard library."""
    body = request.json
    fast = request.app.ctx.synchro.interface.serializer.fast
    if fast != body["fast"]:
        return json({"fast": fast}, status=409)
    ctx = request.ctx.synchro
    if operation == "set":
        await ctx.set(body["key"], stdlib_json.loads(body["value"]))
        done = True
    else:
        expected, new = stdlib_json.loads(body["expected"]), stdlib_json.loads(body["new"])
        done = await ctx.compare_and_set(body["key"], expected, new)
    return json({"fast": fast, "done": done})
