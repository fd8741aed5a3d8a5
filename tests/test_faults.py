"""Exact under faults: a stalled or frozen backend, real servers, real signals.

Every backend here is a private server process of the test (a redis-server, a memcached,
a standalone manager) so that it can be stopped with SIGSTOP without disturbing the rest
of the suite. A non-idempotent operation must never be sent twice: an increment that timed
out raised SynchroConnectionError and may or may not have been applied, so the final count
lies between the acknowledged and the issued increments, never above.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import valkey.asyncio
from sanic import Sanic

from sanic_synchro_ctx import (
    AIORedis,
    AsyncioRedis,
    LockNotOwned,
    Memcache,
    Synchro,
    SynchroConnectionError,
    SyncManager,
)
from sanic_synchro_ctx.interfaces.base import BaseSynchroInterface
from sanic_synchro_ctx.leader import Leadership

from .backends import MemcachedServer, RedisServer, frozen

pytestmark = pytest.mark.timeout(180)

#: Interfaces whose backend is a process a test can freeze, each with a 1 s timeout.
FREEZABLE = ["syncmanager", "aioredis", "aioredis-valkey", "asyncio_redis", "memcache"]
TIMEOUT = 1.0


class Backend:
    """A private backend process and an interface factory bound to it."""

    def __init__(self, pid: int, make: Callable[[], BaseSynchroInterface]) -> None:
        self.pid = pid
        self.make = make

    def frozen(self, watchdog: float = 20.0) -> contextlib.AbstractContextManager[threading.Event]:
        """SIGSTOP the backend for the block (see backends.frozen)."""
        return frozen(self.pid, watchdog)


@pytest.fixture(params=FREEZABLE)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    kind = request.param
    if kind == "syncmanager":
        from sanic_synchro_ctx.interfaces.syncmanager.process import ManagerProcess

        process = ManagerProcess.start(watch_pid=os.getpid())
        yield Backend(
            process.pid,
            lambda: SyncManager(process.address, process.authkey, timeout=TIMEOUT),
        )
        process.stop()
        return
    if kind == "memcache":
        server: Any = MemcachedServer().start()
        assert server.process is not None
        port = server.port
        yield Backend(server.process.pid, lambda: Memcache(port=port, timeout=TIMEOUT))
        server.stop()
        return
    server = RedisServer(tmp_path).start()
    assert server.process is not None
    url, port = server.url, server.port
    if kind == "aioredis":
        yield Backend(
            server.process.pid,
            lambda: AIORedis.from_url(url, socket_timeout=TIMEOUT),
        )
    elif kind == "aioredis-valkey":  # valkey-py retries like redis-py: AIORedis turns it off
        yield Backend(
            server.process.pid,
            lambda: AIORedis(valkey.asyncio.Valkey.from_url(url, socket_timeout=TIMEOUT)),
        )
    else:
        yield Backend(server.process.pid, lambda: AsyncioRedis(port=port, timeout=TIMEOUT))
    server.stop()


def _attach(interface: BaseSynchroInterface, app_name: str) -> Any:
    app = Sanic(app_name)
    Synchro(app, interface=interface)
    return app.ctx.synchro


async def test_a_stalled_backend_never_applies_an_increment_twice(
    backend: Backend, app_name: str
) -> None:
    """16 tasks increment while the backend stalls for longer than the timeout: calls
    that timed out are not sent again when it resumes (the issue's 33,277 > 33,262)."""
    ctx = _attach(backend.make(), app_name)
    await ctx.set("n", 0)
    issued = acknowledged = 0
    errors: set[str] = set()
    running = True

    async def bump() -> None:
        nonlocal issued, acknowledged
        while running:
            issued += 1
            try:
                await ctx.increment("n")
            except SynchroConnectionError as exc:
                errors.add(str(exc))
                await asyncio.sleep(0.05)
            else:
                acknowledged += 1

    tasks = [asyncio.create_task(bump()) for _ in range(16)]
    await _until(lambda: acknowledged >= 200)
    with backend.frozen():
        await asyncio.sleep(TIMEOUT * 2.5)
    mark = acknowledged
    await _until(lambda: acknowledged >= mark + 200, timeout=30)
    running = False
    await asyncio.gather(*tasks)
    final = await _read_eventually(ctx, "n")
    assert acknowledged <= final <= issued, (acknowledged, final, issued)
    assert errors, "no call timed out during the stall"
    for error in errors:  # the caller is told that the effect of a timed-out call is unknown
        assert "unknown" in error, error
    await ctx.interface.aclose()


def test_a_stalled_backend_never_applies_a_blocking_increment_twice(
    backend: Backend, app_name: str
) -> None:
    ctx = _attach(backend.make(), app_name).sync
    ctx.set("n", 0)
    counts = {"issued": 0, "acknowledged": 0}
    errors: list[str] = []
    lock = threading.Lock()
    running = threading.Event()
    running.set()

    def bump() -> None:
        while running.is_set():
            with lock:
                counts["issued"] += 1
            try:
                ctx.increment("n")
            except SynchroConnectionError as exc:
                errors.append(str(exc))
                time.sleep(0.05)
            else:
                with lock:
                    counts["acknowledged"] += 1
        ctx.interface.close()  # this thread's connections

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    _wait_until(lambda: counts["acknowledged"] >= 100)
    with backend.frozen():
        time.sleep(TIMEOUT * 2.5)
    mark = counts["acknowledged"]
    _wait_until(lambda: counts["acknowledged"] >= mark + 100, timeout=30)
    running.clear()
    for thread in threads:
        thread.join()
    final = ctx.get("n")
    assert counts["acknowledged"] <= final <= counts["issued"], (counts, final)
    assert errors, "no call timed out during the stall"
    for error in errors:  # the caller is told that the effect of a timed-out call is unknown
        assert "unknown" in error, error
    ctx.interface.close()


@pytest.mark.parametrize("front_end", ["async", "blocking"])
async def test_a_pipeline_on_a_frozen_backend_is_never_sent_twice(
    backend: Backend, app_name: str, front_end: str
) -> None:
    """A pipeline of increments sent to a frozen backend: within the timeout each handle
    says its effect is unknown; when the backend resumes, each ran at most once."""
    ctx = _attach(backend.make(), app_name)
    await ctx.set("n", 0)

    def pipelined() -> list[Any]:
        with ctx.sync.pipeline() as pipe:
            return [pipe.increment("n") for _ in range(20)]

    with backend.frozen():
        started = time.monotonic()
        if front_end == "async":
            async with ctx.pipeline() as pipe:
                handles = [pipe.increment("n") for _ in range(20)]
        else:
            handles = await asyncio.to_thread(pipelined)
        assert time.monotonic() - started < TIMEOUT * 3
    with pytest.raises(SynchroConnectionError, match="unknown"):
        handles[0].result()  # the others: effect unknown too, or (in a later round trip
    for handle in handles:  # of a backend without ordered round trips) not sent
        with pytest.raises(SynchroConnectionError):
            handle.result()
    assert 0 <= await _read_eventually(ctx, "n") <= 20
    async with ctx.pipeline() as pipe:  # it answers again
        after = [pipe.increment("n") for _ in range(5)]
    values = [await handle for handle in after]
    # increasing, and never past what was issued (the frozen ones, still in the thawed
    # server's input, may land between: each at most once)
    assert values == sorted(set(values))
    assert 5 <= values[-1] <= 25
    assert await ctx.get("n") <= 25
    ctx.interface.close()
    await ctx.interface.aclose()


async def test_a_frozen_backend_fails_every_async_call_within_its_timeout(
    backend: Backend, app_name: str
) -> None:
    """Each call ends within its timeout with SynchroConnectionError, the second one too
    (reconnecting is bounded as well), and the event loop is never held for longer."""
    ctx = _attach(backend.make(), app_name)
    await ctx.set("k", "v")
    longest = 0.0
    ticking = True

    async def ticker() -> None:
        nonlocal longest
        last = time.monotonic()
        while ticking:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            longest = max(longest, now - last)
            last = now

    tick = asyncio.create_task(ticker())
    with backend.frozen() as thawed:
        for call in (lambda: ctx.get("k"), lambda: ctx.increment("n"), lambda: ctx.get("k")):
            with pytest.raises(SynchroConnectionError):
                await call()
            assert not thawed.is_set(), "a call waited for the backend to resume"
    ticking = False
    await tick
    assert longest < TIMEOUT + 1.5, f"the event loop was held for {longest:.2f} s"
    assert await _read_eventually(ctx, "k") == "v"
    await ctx.interface.aclose()


async def test_the_timeout_bounds_a_callers_whole_wait(backend: Backend, app_name: str) -> None:
    """Calls issued together on a frozen backend: those queued behind the round trip in
    flight wait for it and then for their own, within one timeout in all, not two (503s
    took up to 2.2 s with timeout=1)."""
    ctx = _attach(backend.make(), app_name)
    await ctx.set("k", "v")

    async def waited(call: Callable[[], Any]) -> float:
        started = time.monotonic()
        with pytest.raises(SynchroConnectionError):
            await call()
        return time.monotonic() - started

    with backend.frozen():
        waits = await asyncio.gather(
            waited(lambda: ctx.get("k")),
            waited(lambda: ctx.increment("n")),
            waited(lambda: ctx.get("k")),
        )
    assert max(waits) < TIMEOUT + 0.5, waits
    assert await _read_eventually(ctx, "k") == "v"
    await ctx.interface.aclose()


def test_a_frozen_backend_fails_every_blocking_call_within_its_timeout(
    backend: Backend, app_name: str
) -> None:
    ctx = _attach(backend.make(), app_name).sync
    ctx.set("k", "v")
    with backend.frozen() as thawed:
        for call in (lambda: ctx.get("k"), lambda: ctx.increment("n"), lambda: ctx.get("k")):
            with pytest.raises(SynchroConnectionError):
                call()
            assert not thawed.is_set(), "a call waited for the backend to resume"
    _wait_until(lambda: _answers(lambda: ctx.get("k")) == "v")
    ctx.interface.close()


async def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def _wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def _answers(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except SynchroConnectionError:
        return None


async def _read_eventually(ctx: Any, key: str) -> Any:
    """Read ``key`` once the backend answers again (the first calls after a thaw may still
    meet connections that timed out)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return await ctx.get(key)
        except SynchroConnectionError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


# -- an attempt to take a lock or a place that timed out --------------------------------------


@pytest.mark.parametrize("what", ["lock", "semaphore"])
@pytest.mark.parametrize("front", ["async", "blocking"])
async def test_an_acquire_that_timed_out_leaves_nothing_held(
    backend: Backend, app_name: str, front: str, what: str
) -> None:
    """The backend is frozen while an acquire with a 20 s lease is on its way: the attempt
    fails with "effect unknown", and what it may have taken is given back, on both front
    ends (the blocking one left the lock held by nobody for its whole ttl: 3 of 3 runs)."""
    ctx = _attach(backend.make(), app_name)
    one = ThreadPoolExecutor(1)  # the blocking calls' thread, connected before the freeze
    loop = asyncio.get_running_loop()

    def take(on: Any, ttl: float, timeout: float | None = None) -> Any:
        if what == "lock":
            return on.lock("job", ttl=ttl, timeout=timeout)
        return on.semaphore("job", 1, ttl=ttl, timeout=timeout)

    async def attempt() -> None:
        if front == "async":
            await take(ctx, 20).acquire()
        else:
            await loop.run_in_executor(one, take(ctx.sync, 20).acquire)

    try:
        await ctx.set("warm", 1)
        await loop.run_in_executor(one, ctx.sync.get, "warm")
        with backend.frozen(), pytest.raises(SynchroConnectionError):
            await attempt()
        await _read_eventually(ctx, "warm")
        async with take(ctx, 5, timeout=5):  # LockTimeout if the lost attempt still held it
            pass
    finally:
        await loop.run_in_executor(one, ctx.interface.close_thread)
        one.shutdown()
        await ctx.interface.aclose()


# -- leases lost while the backend was frozen ---------------------------------------------------


async def test_a_renewed_lock_frozen_out_for_longer_than_its_lease_is_lost(
    backend: Backend, app_name: str
) -> None:
    """auto_renew cannot renew while the backend is frozen: once the lease has run out the
    lock reports it (``lost``), and leaving the block raises LockNotOwned."""
    ctx = _attach(backend.make(), app_name)
    lease = 1.5
    lock = ctx.lock("job", ttl=lease, auto_renew=True)
    await lock.acquire()
    assert not lock.lost
    with backend.frozen():
        await _until(lambda: lock.lost, timeout=lease + 3 * TIMEOUT)
    assert lock.lost
    with pytest.raises(LockNotOwned):
        await lock.release()  # what leaving an ``async with`` block does
    async with ctx.lock("job", ttl=5, timeout=10):  # the lease ended: free for others
        pass
    await ctx.interface.aclose()


async def test_a_leader_job_is_cancelled_before_its_lease_can_end(
    backend: Backend, app_name: str
) -> None:
    """The backend frozen for longer than the lease: the job is cancelled before the
    lease could have ended, and another contender leads once the backend is back."""
    ctx = _attach(backend.make(), app_name)
    lease = 2.0
    events: list[tuple[str, int, float]] = []

    def job_of(who: int) -> Callable[[], Any]:
        async def job() -> None:
            events.append(("start", who, time.monotonic()))
            try:
                await asyncio.Event().wait()
            finally:
                events.append(("end", who, time.monotonic()))

        return job

    first = Leadership(ctx.interface, "frozen", job_of(1), ttl=lease)
    first_runs = asyncio.create_task(first.run())
    await _until(lambda: first.leading)
    second = Leadership(ctx.interface, "frozen", job_of(2), ttl=lease)
    second_runs = asyncio.create_task(second.run())
    with backend.frozen():
        frozen_at = time.monotonic()
        await _until(lambda: any(e[0] == "end" for e in events), timeout=lease + 2 * TIMEOUT)
        cancelled_at = next(e[2] for e in events if e[0] == "end")
        assert cancelled_at - frozen_at < lease  # the lease, renewed before, outlives it
    # A second start, by either contender: ``first.leading`` alone would not do, it is
    # still True between the job's end and ``run``'s finally, and a lead whose job task is
    # cancelled before it first runs starts (and ends) nothing.
    await _until(lambda: sum(e[0] == "start" for e in events) == 2, 20)
    for task in (first_runs, second_runs):
        task.cancel()
    await asyncio.gather(first_runs, second_runs, return_exceptions=True)
    starts = [e for e in events if e[0] == "start"]
    ends = [e for e in events if e[0] == "end"]
    assert len(starts) == len(ends) == 2  # every run ended (the last with the tasks)
    assert ends[0][2] <= starts[1][2]  # the runs never overlapped
    await ctx.interface.aclose()
