"""The manager's server, through its documented wire protocol and the SyncManager interface:
pipelined connections served by one thread, misbehaving clients dropped alone."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sanic_synchro_ctx import SynchroValueError, SyncManager
from sanic_synchro_ctx.interfaces.syncmanager.process import ManagerProcess
from sanic_synchro_ctx.interfaces.syncmanager.wire import (
    PIPELINED,
    AuthenticationFailed,
    connect,
    frame,
    read_message,
    take_messages,
)

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


def interface(manager: ManagerProcess, prefix: str) -> SyncManager:
    return SyncManager(manager.address, manager.authkey, prefix=prefix)


async def test_pipelined_clients_share_one_serving_thread(manager: ManagerProcess) -> None:
    pid = manager.pid
    before = steady(lambda: threads_of(pid))
    loops = [interface(manager, "p") for _ in range(6)]  # one connection each, pipelined
    try:
        results = await asyncio.gather(*(one.increment("n") for one in loops * 50))
        assert sorted(results) == list(range(1, 301))
        # Each interface opened a pipelined connection for its event loop, and a blocking
        # one (for direct calls while the loop is calm): six threads more, not twelve.
        assert steady(lambda: threads_of(pid)) == before + 6
        # A blocking caller's connection is served by a thread of its own.
        blocking = [interface(manager, "b") for _ in range(2)]
        for one in blocking:
            one.run_blocking(one.get("n"))
        assert steady(lambda: threads_of(pid)) == before + 6 + 2
        for one in blocking:
            one.close()
    finally:
        for one in loops:
            await one.aclose()


def pipelined_socket(manager: ManagerProcess) -> socket.socket:
    sock, _ = connect(manager.address, manager.authkey, PIPELINED, 10)
    return sock


async def test_a_client_that_stops_reading_does_not_hold_up_the_others(
    manager: ManagerProcess,
) -> None:
    writer = interface(manager, "w")
    big = "x" * 1_000_000
    await writer.set("big", big)
    stalled = pipelined_socket(manager)
    try:
        # 64 MB of answers that nobody reads: far more than the socket buffers hold.
        request = frame(("get", (writer.prefix + "big",)))
        stalled.sendall(request * 64)
        others = interface(manager, "others")
        results = await asyncio.wait_for(
            asyncio.gather(*(others.increment("n") for _ in range(300))), 20
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
        expected = (True, b'"' + big.encode() + b'"')
        assert answers == [expected] * 64
        await others.aclose()
    finally:
        stalled.close()
        await writer.aclose()


async def test_a_client_sending_garbage_is_dropped_alone(manager: ManagerProcess) -> None:
    fine = interface(manager, "fine")
    assert await fine.increment("n") == 1
    broken = pipelined_socket(manager)
    try:
        payload = b"this is not a pickle"
        broken.sendall(len(payload).to_bytes(4, "big") + payload)
        broken.settimeout(10)
        assert broken.recv(100) == b""  # closed by the manager
        results = await asyncio.gather(*(fine.increment("n") for _ in range(50)))
        assert sorted(results) == list(range(2, 52))
    finally:
        broken.close()
        await fine.aclose()


def test_an_operation_the_store_does_not_have_is_refused_and_the_connection_goes_on(
    manager: ManagerProcess,
) -> None:
    sock = pipelined_socket(manager)
    sock.settimeout(10)
    buffer = bytearray()
    try:
        for request in (("_drop", ("k",)), ("not-a-method", ()), "not even a tuple"):
            sock.sendall(frame(request))
            ok, error = read_message(sock, buffer)
            assert not ok
            assert isinstance(error, SynchroValueError)
        sock.sendall(frame(("increment", ("k", 5))))
        assert read_message(sock, buffer) == (True, 5)
    finally:
        sock.close()


def test_the_handshake_refuses_a_wrong_key_and_a_peer_that_is_no_manager(
    manager: ManagerProcess, tmp_path: Path
) -> None:
    with pytest.raises(AuthenticationFailed, match="authentication failed"):
        connect(manager.address, b"wrong", PIPELINED, 10)
    impostor = socket.socket(socket.AF_UNIX)
    impostor.bind(str(tmp_path / "impostor.sock"))
    impostor.listen()
    try:

        def greet() -> None:
            peer, _ = impostor.accept()
            with peer:
                peer.sendall(frame("hello, I am something else"))

        loop_thread = threading.Thread(target=greet)
        loop_thread.start()
        with pytest.raises(AuthenticationFailed, match="not a synchro manager"):
            connect(str(tmp_path / "impostor.sock"), manager.authkey, PIPELINED, 10)
        loop_thread.join()
    finally:
        impostor.close()


def test_messages_are_framed_one_after_the_other() -> None:
    buffer = bytearray(frame({"k": [1, 2.5, "é"]}) + frame(7) + frame("partial")[:-2])
    assert take_messages(buffer) == [{"k": [1, 2.5, "é"]}, 7]
    buffer += frame("partial")[-2:]
    assert take_messages(buffer) == ["partial"]
    assert buffer == b""
