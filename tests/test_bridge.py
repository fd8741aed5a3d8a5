"""The blocking bridge: a private loop per calling thread for blocking callers."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sanic import Request, Sanic
from sanic.response import text

from sanic_synchro_ctx import AIORedis, Synchro, SynchroError
from sanic_synchro_ctx.bridge import bridge

from .backends import RedisServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own: its client connections are this test's."""
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def clients_of(server: RedisServer) -> int:
    """Connected clients, the probe's own connection left out."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as probe:
        probe.sendall(b"INFO clients\r\n")
        reply = b""
        while b"connected_clients:" not in reply or not reply.endswith(b"\r\n"):
            reply += probe.recv(4096)
    line = next(ln for ln in reply.split(b"\r\n") if ln.startswith(b"connected_clients:"))
    return int(line.split(b":")[1]) - 1


def wait_until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
async def redis_interface(redis_server: RedisServer, app_name: str) -> Any:
    interface = AIORedis.from_url(redis_server.url, prefix=f"{app_name}:")
    yield interface
    await interface.aclose()


async def test_blocking_calls_run_on_a_private_loop_of_the_callers_thread(
    redis_interface: Any,
) -> None:
    caller = asyncio.get_running_loop()

    async def where() -> tuple[int, asyncio.AbstractEventLoop]:
        await redis_interface.set("k", 1)
        return threading.get_ident(), asyncio.get_running_loop()

    thread, loop = redis_interface.run_blocking(where())
    assert thread == threading.get_ident()  # no thread hop...
    assert loop is bridge.loop
    assert loop is not caller
    assert asyncio.get_running_loop() is caller  # which is back in place
    assert redis_interface.run_blocking(redis_interface.get("k")) == 1
    assert await redis_interface.get("k") == 1  # the caller's loop has its own client


def test_each_thread_gets_its_own_private_loop(redis_interface: Any) -> None:
    loops = []

    def use() -> None:
        redis_interface.run_blocking(redis_interface.increment("n"))
        loops.append(bridge.loop)
        bridge.close()

    workers = [threading.Thread(target=use) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len({id(loop) for loop in loops}) == 3
    assert redis_interface.run_blocking(redis_interface.get("n")) == 3


def test_a_blocking_call_from_the_bridge_thread_is_refused(redis_interface: Any) -> None:
    async def reenter() -> Any:
        return redis_interface.run_blocking(redis_interface.get("k"))

    with pytest.raises(SynchroError, match="running on the blocking bridge"):
        redis_interface.run_blocking(reenter())


def test_a_forked_child_gets_a_bridge_of_its_own(redis_interface: Any) -> None:
    redis_interface.run_blocking(redis_interface.set("k", "parent"))
    assert bridge.loop is not None
    pid = os.fork()
    if pid == 0:  # child: the parent's bridge thread does not exist here
        code = 1
        try:
            fresh = bridge.loop is None
            redis_interface.run_blocking(redis_interface.set("k", "child"))
            code = 0 if fresh and bridge.loop is not None else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert redis_interface.run_blocking(redis_interface.get("k")) == "child"


def test_server_stop_closes_the_clients_of_its_loop_and_of_the_bridge(
    private_redis: RedisServer, app_name: str
) -> None:
    app = Sanic(app_name)
    interface = AIORedis.from_url(private_redis.url, prefix=f"{app_name}:")
    Synchro(app, interface=interface)
    seen: list[int] = []

    @app.get("/async")
    async def async_handler(request: Request) -> Any:
        return text(str(await request.ctx.synchro.increment("n")))

    @app.get("/def")
    def def_handler(request: Request) -> Any:
        return text(str(request.ctx.synchro.increment("n")))

    @app.before_server_stop
    async def count_clients(app: Sanic[Any, Any]) -> None:
        seen.append(clients_of(private_redis))

    assert app.test_client.get("/async")[1].text == "1"
    assert app.test_client.get("/def")[1].text == "2"
    assert seen == [1, 1]  # one client per run: the server loop's, then the bridge's
    wait_until(lambda: clients_of(private_redis) == 0)  # after_server_stop closed them
    assert app.test_client.get("/async")[1].text == "3"  # and they reopen on demand


def test_closing_the_bridge_closes_its_clients_and_it_reopens_on_demand(
    private_redis: RedisServer, app_name: str
) -> None:
    interface = AIORedis.from_url(private_redis.url, prefix=f"{app_name}:")
    interface.run_blocking(interface.set("k", 1))
    loop = bridge.loop
    assert loop is not None
    assert clients_of(private_redis) == 1
    bridge.close()
    assert bridge.loop is None
    assert loop.is_closed()
    wait_until(lambda: clients_of(private_redis) == 0)  # its closer closed the client first
    assert interface.run_blocking(interface.get("k")) == 1
    interface.close()


def test_closing_the_bridge_ends_the_tasks_left_on_its_loop() -> None:
    """A client's reader task left on a private loop (its connection closed, or its client
    never closed) is cancelled and waited for when the loop closes, never destroyed pending
    ("Task was destroyed but it is pending!")."""
    left: list[asyncio.Task[Any]] = []

    async def leave_a_task() -> None:
        left.append(asyncio.get_running_loop().create_task(asyncio.Event().wait()))

    bridge.run(leave_a_task())
    loop = bridge.loop
    assert loop is not None
    assert not left[0].done()
    bridge.close()
    assert loop.is_closed()
    assert left[0].cancelled()
