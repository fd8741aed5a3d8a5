"""SyncManager beyond the contract: connecting, authentication, outages, hand-over to workers."""

from __future__ import annotations

import os
import signal
import stat
import time
from typing import Any

import pytest
from sanic import Sanic

from sanic_synchro_ctx import (
    Synchro,
    SynchroConnectionError,
    SynchroValueError,
    SyncManager,
)
from sanic_synchro_ctx.launcher import AUTHKEY_ENV, ManagerProcess

pytestmark = pytest.mark.timeout(120)


def context(app_name: str, interface: SyncManager) -> Any:
    app = Sanic(app_name)
    Synchro(app, interface=interface)
    return app.ctx.synchro.sync


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
    with pytest.raises(SynchroConnectionError, match="AuthenticationError"):
        ctx.get("k")


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
    finally:
        second.stop()


def test_without_a_main_process_the_store_lives_in_this_process(app: Any) -> None:
    interface = SyncManager()
    Synchro(app, interface=interface)
    interface.on_server_start(app, "synchro_synchro")
    assert repr(interface) == "SyncManager(in-process)"
    app.ctx.synchro.sync.set("k", 1)
    interface.run_blocking(interface.on_server_stop(app, "synchro_synchro"))
    interface.on_server_start(app, "synchro_synchro")  # a restart keeps the data
    assert app.ctx.synchro.sync.get("k") == 1


def test_main_process_hands_the_store_to_workers(app: Any) -> None:
    """The main process's listener starts a manager; a worker's interface picks it up."""
    main = SyncManager()
    Synchro(app, interface=main)
    main.on_main_process_start(app, "synchro_synchro")
    authkey = bytes(app.shared_ctx.synchro_synchro._authkey)
    try:
        address = main.address
        assert isinstance(address, str)
        directory = os.path.dirname(address)
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        proxy = app.shared_ctx.synchro_synchro
        assert type(proxy).__module__.startswith("multiprocessing")

        worker = SyncManager()  # what a spawned worker builds when it imports the app
        worker.bind(main.prefix or "")
        worker.on_server_start(app, "synchro_synchro")
        app.ctx.synchro.sync.set("from-main", 1)
        assert worker.run_blocking(worker.get("from-main")) == 1
        assert worker.address == address
    finally:
        main.on_main_process_stop(app, "synchro_synchro")
    assert not os.path.exists(directory)
    gone = SyncManager(address, authkey, prefix="probe:")
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
        started = time.monotonic()
        with pytest.raises(SynchroConnectionError, match=r"within 0\.5 s"):
            ctx.increment("n")
        assert 0.5 <= time.monotonic() - started < 3
        frozen.process.send_signal(signal.SIGCONT)
        # The interrupted call's late answer is never read: its connection was dropped.
        assert ctx.get("n") in (1, 2)
        assert ctx.increment("n") == ctx.get("n")
    finally:
        frozen.process.send_signal(signal.SIGCONT)
        frozen.stop()
