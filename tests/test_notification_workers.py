"""Publish/subscribe across real workers, backends that restart, and subscribers that
never read. The contract part (every interface x front end) is test_notifications.py."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sanic_synchro_ctx import AIORedis, AsyncioRedis, SyncManager
from sanic_synchro_ctx.context import SynchroContext
from sanic_synchro_ctx.interfaces.syncmanager.client import open_subscription
from sanic_synchro_ctx.interfaces.syncmanager.push import QUEUE_LIMIT
from sanic_synchro_ctx.interfaces.syncmanager.wire import take_messages

from .backends import RedisServer
from .registry import SERVED_BY
from .servers import SanicServer, manager_processes_watching, wait_for
from .test_workers import heard, subscribers

pytestmark = pytest.mark.timeout(300)


def publish_ten_to_both(server: SanicServer) -> dict[str, Any]:
    """Publish 10 messages through one request; each reached both workers."""
    reply: dict[str, Any] = server.get("/publish/10").json()
    assert reply["receivers"] == [2]
    return reply


def both_heard_all_ten(server: SanicServer, reply: dict[str, Any]) -> bool:
    """Both workers' records end with the last of the 10 messages of ``reply``."""
    records = list(heard(server).values())
    return len(records) == 2 and all(r["last"].get(reply["publisher"]) == 9 for r in records)


@pytest.mark.parametrize("kind", ["aioredis", "asyncio_redis"])
def test_subscribers_resume_after_redis_restarts_and_the_app_keeps_serving(
    kind: str, tmp_path: Path, app_name: str
) -> None:
    redis = RedisServer(tmp_path).start()
    env = {
        "SYNCHRO_INTERFACE": kind,
        "SYNCHRO_PREFIX": app_name,
        "SYNCHRO_REDIS_URL": redis.url,
        "SYNCHRO_MESSAGES": "1",
    }
    try:
        with SanicServer.cli(tmp_path, "--workers", "2", env=env) as server:
            server.wait_workers(2)
            server.assert_served_by(SERVED_BY[kind], 2)
            wait_for(lambda: subscribers(server) == 2, what="2 subscribed workers")
            first = server.get("/publish/10").json()
            wait_for(lambda: sum(r["count"] for r in heard(server).values()) == 20)

            redis.kill()
            assert server.get("/pid").text  # a route without Redis still serves
            redis.start()
            # the subscriptions come back by themselves (the workers' state is gone: a new
            # Redis is empty, so "pids" and the records are written again by the handlers)
            wait_for(lambda: subscribers(server) == 2, what="both workers subscribed again")
            second = publish_ten_to_both(server)
            wait_for(
                lambda: both_heard_all_ten(server, second),
                what="both workers heard the messages after the restart",
            )
            for record in heard(server).values():
                assert record["in_order"] is True
                assert record["last"][first["publisher"]] == 9
            assert "subscription to" in server.log()  # the loss was logged, not silent
    finally:
        redis.stop()


def test_subscribers_resume_after_the_manager_is_replaced(tmp_path: Path) -> None:
    env = {"SYNCHRO_MESSAGES": "1"}
    with SanicServer.cli(tmp_path, "--workers", "2", env=env) as server:
        server.wait_workers(2)
        wait_for(lambda: subscribers(server) == 2, what="2 subscribed workers")
        assert server.process is not None
        (manager,) = manager_processes_watching(server.process.pid)
        os.kill(manager, 9)
        wait_for(
            lambda: manager_processes_watching(server.process.pid) not in ([], [manager]),
            what="a new manager",
        )
        wait_for(lambda: subscribers(server) == 2, what="both workers subscribed again")
        second = publish_ten_to_both(server)
        wait_for(
            lambda: both_heard_all_ten(server, second),
            what="both workers heard the messages after the replacement",
        )


# -- a subscriber that never reads ------------------------------------------------------------


@pytest.fixture
def manager_interface(manager_process: Any, app_name: str) -> Iterator[SyncManager]:
    interface = SyncManager(manager_process.address, manager_process.authkey, prefix=app_name)
    yield interface
    interface.close()


def _latencies(ctx: SynchroContext, channel: str, count: int, message: Any) -> list[float]:
    async def run() -> list[float]:
        took = []
        for _ in range(count):
            started = time.perf_counter()
            await ctx.publish(channel, message)
            took.append(time.perf_counter() - started)
        return took

    return asyncio.run(run())


def test_a_manager_subscriber_that_never_reads_holds_nobody_up(
    manager_interface: SyncManager, manager_process: Any
) -> None:
    """A subscribed connection whose owner never reads: the manager queues up to
    QUEUE_LIMIT bytes for it, then drops and counts; no publish waits for it."""
    ctx = SynchroContext(manager_interface)
    channel = manager_interface.channel_name("firehose")
    sock, _, buffer = open_subscription(
        manager_process.address, manager_process.authkey, [channel], 5.0
    )
    try:
        message = "x" * 10_000
        _latencies(ctx, "firehose", 200, message)
        total = 200 + 2_000
        # 20 MB, five times what the manager may queue for it, and the socket's buffers
        after = _latencies(ctx, "firehose", 2_000, message)
        # none waited for the reader that never reads (a publish held up by its full socket
        # would wait for ever, or fail at the interface's timeout)
        assert max(after) < 1.0, max(after)
        # now read everything that was kept for it...
        sock.settimeout(2.0)
        frames = []
        while True:
            try:
                data = sock.recv(1 << 20)
            except TimeoutError:
                break
            buffer += data
            frames += take_messages(buffer)
        # ... and one more message, which says how many were dropped since the last one kept
        asyncio.run(ctx.publish("firehose", "last"))
        while not frames or frames[-1][1] != b'"last"':
            buffer += sock.recv(1 << 20)
            frames += take_messages(buffer)
        dropped = sum(dropped_before for _, _, dropped_before in frames)
        assert dropped > 0
        # about QUEUE_LIMIT bytes (plus the socket buffers) were kept for it, not 20 MB
        assert len(frames) * 10_000 < QUEUE_LIMIT + 8 * 1_048_576
        assert len(frames) + dropped == total + 1  # every message accounted for
    finally:
        sock.close()


@pytest.mark.parametrize("kind", ["inmemory", "syncmanager", "aioredis", "asyncio_redis"])
async def test_a_subscriber_that_never_reads_keeps_at_most_max_pending(
    kind: str, make_interface: Any
) -> None:
    interface = make_interface(kind, prefix=f"slow-{kind}-{os.getpid()}")
    if kind == "inmemory":
        interface.attach()
    ctx = SynchroContext(interface)
    try:
        async with ctx.subscribe("slow", max_pending=100) as subscription:
            for n in range(5_000):
                await ctx.publish("slow", n)
            deadline = time.monotonic() + 10
            while subscription.dropped < 4_900:
                assert time.monotonic() < deadline, subscription.dropped
                await asyncio.sleep(0.01)
            got = [await subscription.get(1) for _ in range(100)]
            assert got == [("slow", n) for n in range(4_900, 5_000)]
            assert await subscription.get(0.1) is None
            assert subscription.dropped == 4_900
    finally:
        await interface.aclose()


# -- handlers in a single process -----------------------------------------------------------


async def test_on_message_handlers_survive_their_own_exceptions(app: Any) -> None:
    from sanic_synchro_ctx import InMemory, Synchro

    synchro = Synchro(app, interface=InMemory())
    seen: list[Any] = []

    @synchro.on_message("jobs")
    async def fragile(app: Any, message: Any) -> None:
        if message == "boom":
            raise RuntimeError("handler failed")
        seen.append(message)

    @app.get("/")
    async def index(request: Any) -> Any:
        from sanic.response import text

        await request.ctx.synchro.publish("jobs", "boom")
        await request.ctx.synchro.publish("jobs", "after")
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        return text(",".join(seen))

    _, response = await app.asgi_client.get("/")
    assert response.text == "after"


def test_on_message_needs_an_async_handler_and_a_channel() -> None:
    from sanic_synchro_ctx import Synchro, SynchroTypeError, SynchroValueError

    synchro = Synchro()
    with pytest.raises(SynchroValueError):
        synchro.on_message("")
    with pytest.raises(SynchroTypeError):
        synchro.on_message(3)  # type: ignore[arg-type]
    with pytest.raises(SynchroTypeError):

        @synchro.on_message("jobs")
        def plain(app: Any, message: Any) -> None: ...


def test_on_message_on_an_interface_without_channels_fails_at_start(
    app: Any, make_interface: Any
) -> None:
    from sanic_synchro_ctx import Synchro

    synchro = Synchro(app, interface=make_interface("lmdb"))

    @synchro.on_message("jobs")
    async def handler(app: Any, message: Any) -> None: ...

    @app.get("/")
    async def index(request: Any) -> Any: ...

    with pytest.raises(Exception, match="cannot publish or subscribe"):
        app.test_client.get("/")


def test_aioredis_and_asyncio_redis_hear_each_other(redis_server: Any, app_name: str) -> None:
    one = AIORedis.from_url(redis_server.url, prefix=app_name)
    other = AsyncioRedis(port=redis_server.port, prefix=app_name)

    async def run() -> list[Any]:
        async with SynchroContext(one).subscribe("both") as subscription:
            assert await SynchroContext(other).publish("both", {"from": "asyncio_redis"}) == 1
            got = [await subscription.get(5)]
        await one.aclose()
        await other.aclose()
        return got

    assert asyncio.run(run()) == [("both", {"from": "asyncio_redis"})]
