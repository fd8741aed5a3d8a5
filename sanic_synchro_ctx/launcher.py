"""Starting the manager process, and finding the one that serves this Sanic main process.

The manager runs as ``python -m sanic_synchro_ctx serve`` in a child process of its own
session: it imports nothing of the application (unlike a spawned multiprocessing child,
which re-imports ``__main__``), ignores the terminal's Ctrl-C (so it outlives the workers
that still use it while shutting down) and exits when the process it watches exits.
The authkey reaches it through its environment, never its command line.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from multiprocessing import AuthenticationError

from .errors import SynchroConnectionError
from .manager import Address, connect, private_directory, runtime_directory

__all__ = ["AUTHKEY_ENV", "ManagerProcess", "new_authkey", "rendezvous"]

#: Environment variable a manager (and ``SyncManager(address=...)``) reads the authkey from.
AUTHKEY_ENV = "SANIC_SYNCHRO_AUTHKEY"
READY = "sanic-synchro-ctx: serving on "
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 5.0


def new_authkey() -> bytes:
    return secrets.token_hex(32).encode("ascii")


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ManagerProcess:
    """A running manager child process and the address and authkey to reach it."""

    def __init__(
        self, process: subprocess.Popen[bytes], address: str, authkey: bytes, directory: str | None
    ) -> None:
        self.process = process
        self.address = address
        self.authkey = authkey
        self._directory = directory

    @classmethod
    def start(
        cls,
        *,
        watch_pid: int,
        socket_path: str | None = None,
        authkey: bytes | None = None,
        cleanup: tuple[str, ...] = (),
    ) -> ManagerProcess:
        """Start a manager on ``socket_path`` (default: in a new private directory)."""
        directory = None
        if socket_path is None:
            directory = private_directory()
            socket_path = os.path.join(directory, "manager.sock")
        key = authkey if authkey is not None else new_authkey()
        env = dict(os.environ)
        env[AUTHKEY_ENV] = key.decode("ascii")
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [_package_root(), env.get("PYTHONPATH", "")])
        )
        command = [
            sys.executable,
            "-m",
            "sanic_synchro_ctx",
            "serve",
            "--socket",
            socket_path,
            "--watch-pid",
            str(watch_pid),
        ]
        for path in cleanup:
            command += ["--cleanup", path]
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        try:
            line = _read_line(process, _START_TIMEOUT)
        except BaseException:
            process.kill()
            process.wait()
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
            raise
        if not line.startswith(READY):
            process.kill()
            process.wait()
            raise SynchroConnectionError(f"manager process did not start: {line!r}")
        return cls(process, socket_path, key, directory)

    def stop(self) -> None:
        """Stop the manager (its data is gone) and remove its private directory."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The child's first stdout line; the pipe is closed afterwards (the child writes no more)."""
    assert process.stdout is not None
    try:
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        if not ready:
            raise SynchroConnectionError(f"manager process not ready after {timeout} s")
        line = process.stdout.readline().decode("utf-8", "replace").strip()
    finally:
        process.stdout.close()
    if not line:
        raise SynchroConnectionError(
            f"manager process exited before serving (exit code {process.wait()})"
        )
    return line


def _process_stamp(pid: int) -> str:
    """``pid`` plus its start time where known, so a reused pid never finds a stale manager."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return f"{pid}-{int(fields[19])}"
    except (OSError, IndexError, ValueError):
        return str(pid)


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def rendezvous(main_pid: int) -> tuple[Address, bytes]:
    """The manager shared by every worker of Sanic main process ``main_pid``.

    For ``init_app`` called inside a worker's listener, where no main-process listener ran:
    the first worker to arrive starts a manager that lives until ``main_pid`` exits; the
    others find it through files in this user's private runtime directory.
    """
    base = os.path.join(runtime_directory(), _process_stamp(main_pid))
    socket_path, key_path, lock_path = base + ".sock", base + ".key", base + ".lock"
    with _file_lock(lock_path):
        try:
            with open(key_path, "rb") as handle:
                authkey = handle.read().strip()
            connect(socket_path, authkey)
            return socket_path, authkey
        except (OSError, EOFError, AuthenticationError):
            pass
        for stale in (socket_path, key_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        authkey = new_authkey()
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(authkey)
        ManagerProcess.start(
            watch_pid=main_pid,
            socket_path=socket_path,
            authkey=authkey,
            cleanup=(key_path, lock_path),
        )
        return socket_path, authkey
