"""SyncManager beyond the contract: connecting, authentication, outages, hand-over to workers."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
from typing import Any

import pytest
from sanic import Sanic

from sanic_synchro_ctx import (
    Synchro,
    SynchroConnectionError,
    SynchroError,
    SynchroValueError,
    SyncManager,
)
from sanic_synchro_ctx.context import SynchroContext
from sanic_synchro_ctx.interfaces.syncmanager.client import AsyncClient
from sanic_synchro_ctx.interfaces.syncmanager.process import AUTHKEY_ENV, READY, ManagerProcess

from .backends import wait_stopped

pytestmark = pytest.mark.timeout(120)


def context(app_name: str, interface: SyncManager) -> Any:
    app = Sanic(app_name)
    Synchro(app, interface=interface)
    return app.ctx.synchro.sync


async def test_an_unstarted_manager_says_so_on_both_front_ends() -> None:
    """Not ``SynchroError: SyncManager: AssertionError:`` on the async front end."""
    ctx = SynchroContext(SyncManager(prefix="p:"))
    with pytest.raises(SynchroError, match="SyncManager is not started: attach it"):
        await ctx.get("a")
    with pytest.raises(SynchroError, match="SyncManager is not started: attach it"):
        await ctx.increment("a")
    with pytest.raises(SynchroError, match="SyncManager is not started: attach it"):
        ctx.sync.get("a")


def test_connects_with_str_or_bytes_authkey(app_name: str, manager_process: ManagerProcess) -> None:
    one = context(app_name + "1", SyncManager(manager_process.address, manager_process.authkey))
    two = SyncManager(manager_process.address, manager_process.authkey.decode(), prefix="p:")
    one.set("k", "shared")
    assert two.run_blocking(two.get("k")) is None  # another namespace
    assert one.get("k") == "shared"


def test_authkey_from_the_environment(
    app_name: str, manager_process: ManagerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AUTHKEY_ENV, manager_process.authkey.decode())
    ctx = context(app_name, SyncManager(manager_process.address))
    assert ctx.increment("n") == 1


def test_address_without_authkey_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUTHKEY_ENV, raising=False)
    with pytest.raises(SynchroValueError, match=AUTHKEY_ENV):
        SyncManager("/tmp/nowhere.sock")
    with pytest.raises(SynchroValueError):
        SyncManager(authkey=b"key-without-address")


def test_wrong_authkey_is_a_connection_error(
    app_name: str, manager_process: ManagerProcess
) -> None:
    ctx = context(app_name, SyncManager(manager_process.address, b"not-the-key"))
    with pytest.raises(SynchroConnectionError, match="authentication failed"):
        ctx.get("k")


def test_an_authkey_file_ending_in_a_newline_serves_and_connects(
    app_name: str, tmp_path: Any
) -> None:
    """``echo secret > key``: the manager and SyncManager(authkey_file=) read it alike."""
    key_file = tmp_path / "key"
    key_file.write_text("a-secret-of-ours\n")
    socket_path = str(tmp_path / "m.sock")
    serving = subprocess.Popen(
        [sys.executable, "-m", "sanic_synchro_ctx", "serve", "--socket", socket_path,
         "--authkey-file", str(key_file), "--watch-pid", str(os.getpid())],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert serving.stdout is not None
        assert serving.stdout.readline().startswith(READY.encode())
        ctx = context(app_name, SyncManager(socket_path, authkey_file=str(key_file)))
        assert ctx.increment("n") == 1
        raw = SyncManager(socket_path, key_file.read_bytes(), prefix="raw")  # newline kept
        with pytest.raises(SynchroConnectionError, match="authentication failed"):
            raw.run_blocking(raw.get("n"))
    finally:
        serving.terminate()
        serving.wait(10)


def test_unreachable_manager_is_a_connection_error(app_name: str, tmp_path: Any) -> None:
    ctx = context(app_name, SyncManager(str(tmp_path / "absent.sock"), b"key"))
    started = time.monotonic()
    with pytest.raises(SynchroConnectionError):
        ctx.increment("n")
    assert time.monotonic() - started < 2


def test_manager_killed_then_restarted(app_name: str, tmp_path: Any) -> None:
    socket_path = str(tmp_path / "m.sock")
    authkey = b"restart-key"
    first = ManagerProcess.start(watch_pid=os.getpid(), socket_path=socket_path, authkey=authkey)
    ctx = context(app_name, SyncManager(socket_path, authkey))
    assert ctx.increment("n") == 1
    with ctx.lock("job") as before:
        pass
    first.process.kill()
    first.process.wait()
    for _ in range(3):  # every call fails fast while it is down
        started = time.monotonic()
        with pytest.raises(SynchroConnectionError):
            ctx.increment("n")
        assert time.monotonic() - started < 2
    second = ManagerProcess.start(watch_pid=os.getpid(), socket_path=socket_path, authkey=authkey)
    try:
        assert ctx.increment("n") == 1  # a new manager starts empty; the client reconnected
        assert ctx.get("n") == 1
        with ctx.lock("job") as after:
            assert after.token > before.token  # fencing tokens never go back (were 1 again)
    finally:
        second.stop()


def test_a_connection_the_manager_closed_is_replaced_before_sending(
    app_name: str, tmp_path: Any
) -> None:
    """A new manager already answers at the address: the first call of each front end finds
    its connection closed by the old one while writing (nothing of it reached a manager),
    so it goes out once on a new connection instead of failing."""
    socket_path = str(tmp_path / "m.sock")
    authkey = b"replace-key"
    first = ManagerProcess.start(watch_pid=os.getpid(), socket_path=socket_path, authkey=authkey)
    app = Sanic(app_name)
    Synchro(app, interface=SyncManager(socket_path, authkey))
    blocking, asynchronous = app.ctx.synchro.sync, app.ctx.synchro

    async def increments() -> list[int]:  # 20 at once: most of them go out in batches
        return sorted(await asyncio.gather(*(asynchronous.increment("n") for _ in range(20))))

    runner = asyncio.Runner()
    try:
        assert blocking.increment("n") == 1
        assert runner.run(increments()) == list(range(2, 22))
        first.process.kill()
        first.process.wait()
        second = ManagerProcess.start(
            watch_pid=os.getpid(), socket_path=socket_path, authkey=authkey
        )
        try:
            assert blocking.increment("n") == 1  # the new manager's store starts empty
            assert runner.run(increments()) == list(range(2, 22))  # each applied once
            assert blocking.get("n") == 21
        finally:
            second.stop()
    finally:
        runner.close()


def test_an_async_connection_the_manager_closed_is_replaced_before_sending(
    tmp_path: Any,
) -> None:
    """The same on an event loop's connection whose loop has not yet read the EOF."""
    socket_path = str(tmp_path / "m.sock")
    authkey = b"replace-key"
    first = ManagerProcess.start(watch_pid=os.getpid(), socket_path=socket_path, authkey=authkey)
    runner = asyncio.Runner()
    client = AsyncClient(runner.get_loop(), socket_path, authkey, timeout=5)
    try:
        assert runner.run(client.call("increment", "n", 1)) == 1
        first.process.kill()
        first.process.wait()
        second = ManagerProcess.start(
            watch_pid=os.getpid(), socket_path=socket_path, authkey=authkey
        )
        try:
            assert runner.run(client.call("increment", "n", 1)) == 1
            assert runner.run(client.call("increment", "n", 1)) == 2
        finally:
            second.stop()
    finally:
        client.close()
        runner.close()


def test_without_a_main_process_the_store_lives_in_this_process(app: Any) -> None:
    interface = SyncManager()
    Synchro(app, interface=interface)
    interface.attach(None)
    assert repr(interface) == "SyncManager(in-process)"
    app.ctx.synchro.sync.set("k", 1)
    interface.run_blocking(interface.aclose())
    interface.attach(None)  # a restart keeps the data
    assert app.ctx.synchro.sync.get("k") == 1


def test_a_started_manager_is_handed_to_workers(app_name: str) -> None:
    """start() (the main process) starts a manager and hands over what a worker's
    attach() needs; the hand-over pickles (it travels to spawned workers)."""
    main = SyncManager(prefix=app_name)
    handover = main.start()
    try:
        address = main.address
        assert isinstance(address, str)
        directory = os.path.dirname(address)
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700

        worker = SyncManager(prefix=app_name)  # what a spawned worker builds on import
        worker.attach(pickle.loads(pickle.dumps(handover)))
        main.run_blocking(main.set("from-main", 1))
        assert worker.run_blocking(worker.get("from-main")) == 1
        assert worker.address == address
        worker.close()
    finally:
        main.stop()
    assert not os.path.exists(directory)
    gone = SyncManager(*handover, prefix="probe:")
    with pytest.raises(SynchroConnectionError):
        gone.run_blocking(gone.get("k"))


def test_a_manager_that_stops_answering_times_out_then_recovers(
    app_name: str, tmp_path: Any
) -> None:
    frozen = ManagerProcess.start(watch_pid=os.getpid(), socket_path=str(tmp_path / "f.sock"))
    try:
        ctx = context(app_name, SyncManager(frozen.address, frozen.authkey, timeout=0.5))
        assert ctx.increment("n") == 1
        frozen.process.send_signal(signal.SIGSTOP)
        wait_stopped(frozen.pid)
        started = time.monotonic()
        with pytest.raises(SynchroConnectionError, match=r"within 0\.5 s"):
            ctx.increment("n")
        assert time.monotonic() - started >= 0.5  # it waited for its timeout, no less
        frozen.process.send_signal(signal.SIGCONT)
        # The interrupted call's late answer is never read: its connection was dropped.
        assert ctx.get("n") in (1, 2)
        assert ctx.increment("n") == ctx.get("n")
    finally:
        frozen.process.send_signal(signal.SIGCONT)
        frozen.stop()
