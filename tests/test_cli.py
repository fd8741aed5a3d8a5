"""``python -m sanic_synchro_ctx serve``: a standalone manager for SyncManager clients."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sanic import Sanic

from sanic_synchro_ctx import Synchro, SynchroConnectionError, SyncManager
from sanic_synchro_ctx.interfaces.syncmanager.process import AUTHKEY_ENV, READY

from .servers import free_port

pytestmark = pytest.mark.timeout(60)


class Served:
    def __init__(self, process: subprocess.Popen[str], lines: list[str]) -> None:
        self.process = process
        self.lines = lines
        self.address = lines[0].removeprefix(READY)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(10)


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[Served] = []

    def run(*args: str, env: dict[str, str] | None = None) -> Served:
        process = subprocess.Popen(
            [sys.executable, "-m", "sanic_synchro_ctx", "serve", *args],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert process.stdout is not None
        lines = [process.stdout.readline().strip()]
        assert lines[0].startswith(READY), lines
        if "--authkey-file" not in args and AUTHKEY_ENV not in (env or {}):
            lines.append(process.stdout.readline().strip())
        served = Served(process, lines)
        started.append(served)
        return served

    yield run
    for served in started:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait()


def shared(app_name: str, address: Any, authkey: bytes | str) -> Any:
    app = Sanic(app_name)
    Synchro(app, interface=SyncManager(address, authkey))
    return app.ctx.synchro.sync


def test_default_socket_in_private_directory_with_generated_key(serve: Any, app_name: str) -> None:
    served = serve()
    assert stat.S_IMODE(os.stat(os.path.dirname(served.address)).st_mode) == 0o700
    key_file = Path(served.lines[1].removeprefix("authkey file: "))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    authkey = key_file.read_bytes()
    first = shared(app_name + "a", served.address, authkey)
    second = shared(app_name + "a", served.address, authkey)  # a second client, same namespace
    first.set("k", "over the socket")
    assert second.get("k") == "over the socket"
    assert served.stop() == 0
    assert not os.path.exists(served.address)  # the socket file is removed on exit


def test_authkey_file_is_created_then_reused(serve: Any, tmp_path: Path, app_name: str) -> None:
    key_file = tmp_path / "key"
    socket_path = str(tmp_path / "m.sock")
    served = serve("--socket", socket_path, "--authkey-file", str(key_file))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    ctx = shared(app_name, socket_path, key_file.read_bytes())
    assert ctx.increment("n") == 1
    served.stop()
    again = serve("--socket", socket_path, "--authkey-file", str(key_file))
    assert again.address == socket_path
    assert shared(app_name, socket_path, key_file.read_bytes()).increment("n") == 1


def test_authkey_from_environment_over_tcp(serve: Any, app_name: str) -> None:
    port = free_port()
    served = serve("--host", "127.0.0.1", "--port", str(port), env={AUTHKEY_ENV: "env-secret"})
    assert served.address == f"127.0.0.1:{port}"
    ctx = shared(app_name, ("127.0.0.1", port), "env-secret")
    assert ctx.set_default({"a": 1}) == {"a": 1}
    wrong = shared(app_name + "x", ("127.0.0.1", port), "wrong-secret")
    with pytest.raises(SynchroConnectionError):
        wrong.get("a")


def test_authkey_never_on_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sanic_synchro_ctx", "serve", "--authkey", "x"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "unrecognized arguments: --authkey" in result.stderr


def test_exits_when_the_watched_process_exits(serve: Any, tmp_path: Path) -> None:
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    served = serve("--socket", str(tmp_path / "w.sock"), "--watch-pid", str(sleeper.pid))
    assert served.process.poll() is None
    assert sleeper.stdin is not None
    sleeper.stdin.close()
    sleeper.wait(10)
    assert served.process.wait(10) == 0


def test_refuses_a_socket_a_live_manager_serves(serve: Any, tmp_path: Path) -> None:
    socket_path = str(tmp_path / "busy.sock")
    serve("--socket", socket_path, env={AUTHKEY_ENV: "k"})
    result = subprocess.run(
        [sys.executable, "-m", "sanic_synchro_ctx", "serve", "--socket", socket_path],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, AUTHKEY_ENV: "k"},
    )
    assert result.returncode != 0
    assert "already serving" in result.stderr
