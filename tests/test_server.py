"""The manager's server: pipelined connections (the workers' event loops) served by one thread."""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import sanic_synchro_ctx
from sanic_synchro_ctx import SynchroError, SyncManager
from sanic_synchro_ctx.framing import frame, take_messages
from sanic_synchro_ctx.launcher import ManagerProcess
from sanic_synchro_ctx.manager import AsyncStoreClient, StoreClient, _handshake, connect

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[ManagerProcess]:
    """A manager of this test's own (its threads are counted)."""
    process = ManagerProcess.start(watch_pid=os.getpid(), socket_path=str(tmp_path / "m.sock"))
    yield process
    process.stop()


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def steady(count: Callable[[], int]) -> int:
    """``count()`` once it held still for 10 readings in a row (threads that served a
    handshake end a moment after it)."""
    deadline = time.monotonic() + 10
    value, same = count(), 0
    while same < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
        now = count()
        same = same + 1 if now == value else 0
        value = now
    return value


def store_ident(manager: ManagerProcess) -> tuple[StoreClient, str]:
    client = connect(manager.address, manager.authkey, timeout=10)
    return client, client.ident


async def test_pipelined_clients_share_one_serving_thread(manager: ManagerProcess) -> None:
    pid = manager.process.pid
    blocking, ident = store_ident(manager)
    loop = asyncio.get_running_loop()
    clients = [
        AsyncStoreClient(loop, manager.address, manager.authkey, ident, timeout=10)
        for _ in range(6)
    ]
    try:
        assert await clients[0].call("increment", "n", 1) == 1
        one = steady(lambda: threads_of(pid))
        results = await asyncio.gather(*(c.call("increment", "n", 1) for c in clients * 50))
        assert sorted(results) == list(range(2, 302))
        # Five more connections, no thread more: the pipelined thread serves them all.
        assert steady(lambda: threads_of(pid)) == one
        # A blocking client still gets multiprocessing's thread per connection.
        more = [connect(manager.address, manager.authkey, timeout=10) for _ in range(2)]
        for client in more:
            client.call("get", "n")
        assert steady(lambda: threads_of(pid)) == one + 2
        for client in more:
            client.close()
    finally:
        for client in clients:
            client.close()
        blocking.close()


PLAIN_SERVER = textwrap.dedent(
    """
    import os, sys
    from multiprocessing.managers import BaseManager
    from sanic_synchro_ctx.store import Store

    store = Store()

    class PlainManager(BaseManager):
        pass

    PlainManager.register("store", callable=lambda: store, exposed=Store.EXPOSED)
    manager = PlainManager(address=sys.argv[1], authkey=os.environ["KEY"].encode())
    server = manager.get_server()
    print("ready", flush=True)
    server.serve_forever()
    """
)


def test_a_manager_without_pipelined_serving_still_serves_async_clients(tmp_path: Path) -> None:
    """multiprocessing's own server (an older manager) refuses serve_pipelined: the async
    front end falls back to a connection served by a thread of its own."""
    address, key = str(tmp_path / "plain.sock"), "k" * 32
    root = Path(sanic_synchro_ctx.__file__).resolve().parent.parent
    env = {**os.environ, "KEY": key, "PYTHONPATH": str(root)}
    server = subprocess.Popen(
        [sys.executable, "-c", PLAIN_SERVER, address], env=env, stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"ready"
        interface = SyncManager(address, key, prefix="plain:")

        async def main() -> list[int]:
            return await asyncio.gather(*(interface.increment("n") for _ in range(200)))

        assert sorted(asyncio.run(main())) == list(range(1, 201))
        assert max(interface.batch_sizes) > 1  # they went as batches, on the fallback
    finally:
        server.kill()
        server.wait()


def pipelined_socket(manager: ManagerProcess) -> socket.socket:
    sock = _handshake(manager.address, manager.authkey)
    sock.setblocking(True)
    return sock


async def test_a_client_that_stops_reading_does_not_hold_up_the_others(
    manager: ManagerProcess,
) -> None:
    blocking, ident = store_ident(manager)
    big = b"x" * 1_000_000
    blocking.call("set", "big", big, None)
    stalled = pipelined_socket(manager)
    try:
        # 64 MB of answers that nobody reads: far more than the socket buffers hold.
        stalled.sendall(b"".join(frame((ident, "get", ("big",), {})) for _ in range(64)))
        interface = SyncManager(manager.address, manager.authkey, prefix="others:", timeout=5)
        results = await asyncio.wait_for(
            asyncio.gather(*(interface.increment("n") for _ in range(300))), 20
        )
        assert sorted(results) == list(range(1, 301))
        # The stalled client's answers were kept, complete and in order.
        buffer = bytearray()
        answers: list[object] = []
        stalled.settimeout(20)
        while len(answers) < 64:
            data = stalled.recv(1_048_576)
            assert data, "the manager closed the stalled connection"
            buffer += data
            answers += take_messages(buffer)
        assert answers == [("#RETURN", big)] * 64
    finally:
        stalled.close()
        blocking.close()


async def test_a_client_sending_garbage_is_dropped_alone(manager: ManagerProcess) -> None:
    interface = SyncManager(manager.address, manager.authkey, prefix="fine:")
    assert await interface.increment("n") == 1
    broken = pipelined_socket(manager)
    try:
        payload = b"this is not a pickle"
        broken.sendall(len(payload).to_bytes(4, "big") + payload)
        broken.settimeout(10)
        assert broken.recv(100) == b""  # closed by the manager
        results = await asyncio.gather(*(interface.increment("n") for _ in range(50)))
        assert sorted(results) == list(range(2, 52))
    finally:
        broken.close()


async def test_a_request_the_store_does_not_expose_is_refused_and_the_connection_goes_on(
    manager: ManagerProcess,
) -> None:
    blocking, ident = store_ident(manager)
    client = AsyncStoreClient(
        asyncio.get_running_loop(), manager.address, manager.authkey, ident, timeout=10
    )
    try:
        with pytest.raises(SynchroError, match="not exposed"):
            await client.call("_drop", "k")
        with pytest.raises(SynchroError, match="KeyError"):
            await AsyncStoreClient(
                asyncio.get_running_loop(), manager.address, manager.authkey, "nope", timeout=10
            ).call("get", "k")
        assert await client.call("increment", "k", 5) == 5
    finally:
        client.close()
        blocking.close()


def test_answers_are_pickled_the_way_connection_recv_reads_them() -> None:
    """The framing is multiprocessing's: a Connection at the other end reads it."""
    from multiprocessing.connection import Connection

    left, right = socket.socketpair()
    with left, right:
        message = ("#RETURN", {"k": [1, 2.5, "é"]})
        left.sendall(frame(message))
        conn = Connection(os.dup(right.fileno()))
        try:
            assert conn.recv() == message
            conn.send(("#RETURN", 7))
            buffer = bytearray(left.recv(100))
        finally:
            conn.close()
        assert take_messages(buffer) == [("#RETURN", 7)]
        assert buffer == b""
    assert pickle.loads(frame(1)[4:]) == 1
