"""Manager processes: starting one, keeping one alive, and meeting at one.

The manager runs as ``python -m sanic_synchro_ctx serve`` in a child process of its own
session: it imports nothing of the application (unlike a spawned multiprocessing child,
which re-imports ``__main__``), ignores the terminal's Ctrl-C (so it outlives the workers
that still use it while shutting down) and exits when the process it watches exits. The
authkey reaches it through its environment, never its command line.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

from ...errors import SynchroConnectionError, SynchroError
from .wire import BLOCKING, Address, connect

__all__ = [
    "AUTHKEY_ENV",
    "READY",
    "ManagerProcess",
    "SupervisedManager",
    "new_authkey",
    "private_directory",
    "read_authkey_file",
    "rendezvous",
    "runtime_directory",
]

#: Environment variable a manager (and ``SyncManager(address=...)``) reads the authkey from.
AUTHKEY_ENV = "SANIC_SYNCHRO_AUTHKEY"
#: The first line a manager writes once clients can connect.
READY = "sanic-synchro-ctx: serving on "
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 5.0
_log = logging.getLogger("sanic_synchro_ctx")


def new_authkey() -> bytes:
    return secrets.token_hex(32).encode("ascii")


def read_authkey_file(path: str) -> bytes:
    """The authkey in file ``path``; surrounding whitespace (``echo key > file`` writes a
    newline) is not part of it. The same reading for the manager and its clients."""
    with open(path, "rb") as handle:
        key = handle.read().strip()
    if not key:
        raise SynchroError(f"authkey file {path} is empty")
    return key


def private_directory() -> str:
    """A new directory only this user can enter (mode 0700), for a socket and its key."""
    return tempfile.mkdtemp(prefix="sanic-synchro-")


def runtime_directory() -> str:
    """This user's fixed directory for rendezvous files; refuses one that others could use."""
    import stat

    path = os.path.join(tempfile.gettempdir(), f"sanic-synchro-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or stat.S_IMODE(info.st_mode) & 0o077
    ):
        raise SynchroError(
            f"{path} is not a private directory of this user (mode 0700); refusing to use it"
        )
    return path


def _package_root() -> str:
    here = os.path.abspath(__file__)
    for _ in range(4):  # .../sanic_synchro_ctx/interfaces/syncmanager/process.py
        here = os.path.dirname(here)
    return here


class ManagerProcess:
    """A running manager child process and the address and authkey to reach it."""

    def __init__(
        self, process: subprocess.Popen[bytes], address: str, authkey: bytes, directory: str | None
    ) -> None:
        self.process = process
        self.address = address
        self.authkey = authkey
        self._directory = directory

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(
        cls,
        *,
        watch_pid: int,
        socket_path: str | None = None,
        authkey: bytes | None = None,
        cleanup: tuple[str, ...] = (),
        lease_grace: bool = False,
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
        if lease_grace:
            command.append("--lease-grace")
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        try:
            line = _read_line(process, _START_TIMEOUT)
            if not line.startswith(READY):
                raise SynchroConnectionError(f"manager process did not start: {line!r}")
        except BaseException:
            process.kill()
            process.wait()
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
            raise
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
        with selectors.DefaultSelector() as selector:  # select() fails past fd 1023
            selector.register(process.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout)
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


#: Called with a new manager's address and authkey before any client can reach it.
Seed = Callable[[Address, bytes], None]


class SupervisedManager:
    """A manager for this process's lifetime, started again at once if it dies.

    Every manager, the first and each replacement, starts on a private socket of its own,
    is seeded there (``seed``: the app's defaults), and only then moved into place under the
    one address its clients know: a client never meets a store that is not seeded yet.
    A replacement's store is new: whatever the one that died held is lost (clients learn
    it from the store's new instance id).
    """

    def __init__(self, *, watch_pid: int, seed: Seed | None = None) -> None:
        self._directory = private_directory()
        self.address = os.path.join(self._directory, "manager.sock")
        self.authkey = new_authkey()
        self._watch_pid = watch_pid
        self._seed = seed
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        #: Managers started after the first one (each after a death).
        self.restarts = 0
        try:
            self._current = self._launch()
        except BaseException:
            shutil.rmtree(self._directory, ignore_errors=True)
            raise
        self._watcher = threading.Thread(target=self._watch, name="synchro-supervisor", daemon=True)
        self._watcher.start()

    @property
    def pid(self) -> int:
        """The running manager's process id."""
        return self._current.pid

    def _launch(self, *, lease_grace: bool = False) -> ManagerProcess:
        staging = os.path.join(self._directory, f"next-{secrets.token_hex(4)}.sock")
        manager = ManagerProcess.start(
            watch_pid=self._watch_pid,
            socket_path=staging,
            authkey=self.authkey,
            lease_grace=lease_grace,
        )
        try:
            if self._seed is not None:
                self._seed(staging, self.authkey)
            os.rename(staging, self.address)  # atomic: clients meet the old one or this one
        except BaseException:
            manager.stop()
            raise
        return manager

    def _watch(self) -> None:
        delay = 0.05
        while True:
            code = self._current.process.wait()
            if self._stopping.is_set():
                return
            started = time.monotonic()
            _log.warning(
                "synchro manager process %d exited (code %s); starting a new one: "
                "its store starts empty (defaults applied again)",
                self._current.pid,
                code,
            )
            while not self._stopping.is_set():
                try:
                    with self._lock:
                        if self._stopping.is_set():
                            return
                        # a replacement: the leases the old one granted may still run
                        self._current = self._launch(lease_grace=True)
                        self.restarts += 1
                    break
                except Exception as exc:  # e.g. it died at once again: retry, slower
                    _log.error("synchro manager restart failed: %s", exc)
                    self._stopping.wait(delay)
                    delay = min(delay * 2, 1.0)
            _log.warning(
                "synchro manager restarted in %.3f s (process %d)",
                time.monotonic() - started,
                self._current.pid,
            )

    def stop(self) -> None:
        """Stop the manager (its data is gone) and remove its directory."""
        self._stopping.set()
        with self._lock:
            self._current.stop()
        shutil.rmtree(self._directory, ignore_errors=True)


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


def rendezvous(group: int, *, timeout: float | None) -> tuple[Address, bytes]:
    """The manager shared by every process of ``group`` (a process id, such as the main
    process of the workers that meet here); it lives until that process exits.

    For ``init_app`` called inside a worker's listener, where no main process started a
    manager: the first worker to arrive starts one; the others find it through files in this
    user's private runtime directory.
    """
    base = os.path.join(runtime_directory(), _process_stamp(group))
    socket_path, key_path, lock_path = base + ".sock", base + ".key", base + ".lock"
    with _file_lock(lock_path):
        try:
            authkey = read_authkey_file(key_path)
            sock, _ = connect(socket_path, authkey, BLOCKING, timeout)
            sock.close()
            return socket_path, authkey
        except (OSError, EOFError, SynchroError):
            pass
        for stale in (socket_path, key_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        authkey = new_authkey()
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(authkey)
        ManagerProcess.start(
            watch_pid=group,
            socket_path=socket_path,
            authkey=authkey,
            cleanup=(key_path, lock_path),
        )
        return socket_path, authkey
