"""The manager process: a multiprocessing manager serving one shared Store.

A client calls Store methods by name; each call is one request/response on the client's
connection and runs inside the manager process under the Store's lock. Blocking clients
get a server thread per connection (multiprocessing's way); the event loops' pipelining
clients are all served by one thread (:mod:`~sanic_synchro_ctx.server`).
The server listens on an AF_UNIX socket (or TCP) and admits only clients that prove they
know the authkey (multiprocessing's HMAC challenge) before it unpickles anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import select
import signal
import socket
import stat
import struct
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Client, Connection
from multiprocessing.managers import BaseManager
from typing import Any

from .errors import SynchroError
from .framing import frame, receive
from .server import PIPELINED, StoreServer
from .store import Store

__all__ = [
    "Address",
    "AsyncStoreClient",
    "StoreClient",
    "StoreManager",
    "connect",
    "format_address",
    "private_directory",
    "runtime_directory",
    "serve",
]

Address = str | tuple[str, int]

_shared: Store | None = None


def _shared_store() -> Store:
    """The one Store of this manager process, created on first use."""
    global _shared
    if _shared is None:
        _shared = Store()
    return _shared


class StoreManager(BaseManager):
    """A manager whose one registered type, ``store``, is the process-wide Store.

    Its server also serves pipelining clients (the workers' event loops) from one thread.
    """

    _Server = StoreServer  # what BaseManager.start() runs

    def get_server(self) -> StoreServer:
        """The server to run in this process (BaseManager's own ignores ``_Server``)."""
        attrs = self._registry, self._address, self._authkey, self._serializer  # type: ignore[attr-defined]
        return StoreServer(*attrs)


StoreManager.register("store", callable=_shared_store, exposed=Store.EXPOSED)


def _set_socket_timeouts(fd: int, seconds: float) -> None:
    """Bound every blocking read and write on socket ``fd``: a stalled call then raises
    BlockingIOError, and costs nothing extra per call (no poll before each read)."""
    whole = int(seconds)
    value = struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))
    sock = socket.socket(fileno=os.dup(fd))  # options belong to the socket, shared by dups
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    finally:
        sock.close()


class StoreClient:
    """Calls the Store of a manager process: one request and one answer per call.

    Each thread (and each forked child) uses a connection of its own. A connection that
    fails or is interrupted mid-call is closed, never reused, so a later call can never
    read a stale answer; the interface reconnects on its next operation. ``timeout``
    bounds the wait for each answer (None: wait for ever).
    """

    def __init__(
        self, address: Address, authkey: bytes, ident: str, *, timeout: float | None, proxy: Any
    ) -> None:
        self.address = address
        self.authkey = authkey
        self._ident = ident
        self._timeout = timeout
        #: A proxy to the Store: its reference keeps the Store registered in the manager, and
        #: it is what app.shared_ctx hands to workers (it pickles with its authkey on spawn).
        self.proxy = proxy
        self._local = threading.local()
        for method in Store.EXPOSED:
            setattr(self, method, functools.partial(self.call, method))

    @property
    def ident(self) -> str:
        """The Store's identity in the manager (what every request names)."""
        return self._ident

    @classmethod
    def from_proxy(cls, proxy: Any, *, timeout: float | None) -> StoreClient:
        """Adopt a proxy (as handed over in app.shared_ctx): its address, authkey and id."""
        token = proxy._token
        return cls(token.address, bytes(proxy._authkey), token.id, timeout=timeout, proxy=proxy)

    def _connection(self) -> Connection:
        local = self._local
        pid = os.getpid()
        if getattr(local, "pid", None) == pid:
            conn: Connection = local.conn
            return conn
        conn = _client_connection(self.address, self.authkey)
        if self._timeout is not None:
            _set_socket_timeouts(conn.fileno(), self._timeout)
        local.conn, local.pid = conn, pid
        return conn

    def _drop(self) -> None:
        local = self._local
        conn = getattr(local, "conn", None)
        if getattr(local, "pid", None) == os.getpid() and conn is not None:
            with contextlib.suppress(OSError):
                conn.close()
        local.pid = local.conn = None

    def call(self, method: str, *args: Any) -> Any:
        try:
            conn = self._connection()
            conn.send((self._ident, method, args, {}))
            kind, result = conn.recv()
        except BlockingIOError:
            self._drop()  # the socket timeout expired mid-call
            raise TimeoutError(f"no answer from the manager within {self._timeout} s") from None
        except BaseException:
            self._drop()
            raise
        return _answer(kind, result)

    def close(self) -> None:
        self._drop()


def _answer(kind: str, result: Any) -> Any:
    """The result of one manager reply, or raise what it reports."""
    if kind == "#RETURN":
        return result
    if kind == "#ERROR" and isinstance(result, BaseException):
        raise result
    raise SynchroError(f"manager answered {kind}: {result}")


def _client_connection(
    address: Address, authkey: bytes, serve: str = "accept_connection"
) -> Connection:
    """An authenticated connection to a manager, accepted as a client connection.

    ``serve`` names how the server is asked to serve it: multiprocessing's
    ``accept_connection`` (a thread of its own) or :data:`~.server.PIPELINED`.
    """
    conn = Client(address, authkey=authkey)
    # The manager protocol: a new connection asks to be served as a client connection.
    args = () if serve == PIPELINED else (threading.current_thread().name,)
    conn.send((None, serve, args, {}))
    kind, result = conn.recv()
    if kind != "#RETURN":
        conn.close()
        raise SynchroError(f"manager refused the connection: {result}")
    return conn


def _handshake(address: Address, authkey: bytes) -> socket.socket:
    """A pipelined connection (see :mod:`.server`) as a non-blocking socket of its own.

    A manager that does not know pipelined serving (started by an older version of this
    package) serves the connection with a thread of its own: the protocol is the same.
    """
    try:
        conn = _client_connection(address, authkey, PIPELINED)
    except SynchroError:
        conn = _client_connection(address, authkey)
    try:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
    finally:
        conn.close()
    sock.setblocking(False)
    return sock


class _Connection:
    """One non-blocking connection to a manager, driven by an event loop's reader callback.

    Requests are written back to back and answered in order.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, timeout: float | None
    ) -> None:
        self._loop = loop
        self.sock: socket.socket | None = sock
        self._fd = sock.fileno()
        self._timeout = timeout
        # answers are awaited in order: (future, deadline) per request sent
        self._waiters: deque[tuple[asyncio.Future[tuple[str, Any]], float]] = deque()
        self._buffer = bytearray()
        self._output = bytearray()  # what the socket did not take yet
        self._timer: asyncio.TimerHandle | None = None
        loop.add_reader(self._fd, self._readable)

    @property
    def open(self) -> bool:
        return self.sock is not None

    def request(self, message: Any) -> asyncio.Future[tuple[str, Any]]:
        """Send one request; the future gets its (kind, result) answer."""
        sock = self.sock
        if sock is None:
            raise EOFError("the manager connection is closed")
        data = frame(message)
        if self._output:
            self._output += data  # keep the order behind what is still waiting
        else:
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._lose(exc)
                raise
            if sent < len(data):
                self._output += data[sent:]
                self._loop.add_writer(self._fd, self._writable)
        loop = self._loop
        future: asyncio.Future[tuple[str, Any]] = loop.create_future()
        timeout = self._timeout
        if timeout is None:
            self._waiters.append((future, 0.0))
        else:
            deadline = loop.time() + timeout
            self._waiters.append((future, deadline))
            if self._timer is None:
                self._timer = loop.call_at(deadline, self._check_deadline)
        return future

    def _writable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            sent = sock.send(self._output)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lose(exc)
            return
        del self._output[:sent]
        if not self._output:
            self._loop.remove_writer(self._fd)

    def _readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            messages = receive(sock, self._buffer)
        except OSError as exc:
            self._lose(exc)
            return
        if messages is None:
            self._lose(EOFError("the manager closed the connection"))
            return
        for message in messages:
            self._answered(message)

    def _answered(self, message: tuple[str, Any]) -> None:
        waiters = self._waiters
        if not waiters:
            return
        future = waiters.popleft()[0]
        if not future.done():  # a cancelled caller's answer is read and dropped
            future.set_result(message)

    def _check_deadline(self) -> None:
        """The timer: fail everything if the oldest request is overdue, else wait for it.

        One timer at a time, moved forward only when it fires (not set and cancelled for
        every request, which would cost more than the rest of a batched round trip).
        """
        self._timer = None
        if not self._waiters or self.sock is None:
            return
        deadline = self._waiters[0][1]
        if deadline <= self._loop.time():
            self._lose(TimeoutError(f"no answer from the manager within {self._timeout} s"))
        else:
            self._timer = self._loop.call_at(deadline, self._check_deadline)

    def _lose(self, exc: BaseException) -> None:
        """Close the connection and fail every call still waiting for an answer."""
        self.close()
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        waiters, self._waiters = self._waiters, deque()
        for future, _ in waiters:
            if not future.done():
                future.set_exception(exc)

    def close(self) -> None:
        """Close the connection (from any thread)."""
        sock, self.sock = self.sock, None
        if sock is None:
            return
        loop = self._loop
        if loop.is_closed():
            sock.close()
        elif loop.is_running() and asyncio.events._get_running_loop() is not loop:
            loop.call_soon_threadsafe(self._unregister, sock)
        else:
            self._unregister(sock)

    def _unregister(self, sock: socket.socket) -> None:
        """Stop watching the socket, on its loop's thread, and close it."""
        with contextlib.suppress(Exception):
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        sock.close()


class AsyncStoreClient:
    """Calls the Store of a manager process from one event loop, without blocking it.

    Requests go back to back on one connection and are answered in order (the manager
    serves a connection's requests one after the other), so an answer always reaches the
    call it belongs to, even when that caller was cancelled meanwhile (the answer is then
    read and dropped: the connection stays usable). ``timeout`` bounds the wait for each
    answer; when it passes, or the connection is lost, every waiting call fails and the
    next call connects again.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        address: Address,
        authkey: bytes,
        ident: str,
        *,
        timeout: float | None,
    ) -> None:
        self._loop = loop
        self._address = address
        self._authkey = authkey
        self._ident = ident
        self._timeout = timeout
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None

    async def _connect(self) -> _Connection:
        if self._connecting is not None:  # another call is connecting: share its outcome
            return await asyncio.shield(self._connecting)
        connecting = self._connecting = self._loop.create_future()
        try:
            # The handshake blocks (multiprocessing's HMAC challenge): run it off the loop.
            sock = await asyncio.wait_for(
                self._loop.run_in_executor(None, _handshake, self._address, self._authkey),
                self._timeout,
            )
            connection = _Connection(self._loop, sock, self._timeout)
            self._connection = connection
            connecting.set_result(connection)
            return connection
        except BaseException as exc:
            connecting.set_exception(exc)
            connecting.exception()  # marked retrieved: each sharer raises it itself
            raise
        finally:
            self._connecting = None

    async def call(self, method: str, *args: Any) -> Any:
        """Call ``method`` of the manager's Store with ``args`` and return its result."""
        connection = self._connection
        if connection is None or not connection.open:
            connection = await self._connect()
        kind, result = await connection.request((self._ident, method, args, {}))
        return _answer(kind, result)

    def close(self) -> None:
        """Close the connection, from any thread (a later call connects again)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def connect(address: Address, authkey: bytes, *, timeout: float | None = None) -> StoreClient:
    """Connect to a manager and return a client for its Store."""
    manager = StoreManager(address=address, authkey=authkey)
    manager.connect()
    proxy = manager.store()  # type: ignore[attr-defined]
    return StoreClient.from_proxy(proxy, timeout=timeout)


def format_address(address: Address) -> str:
    if isinstance(address, tuple):
        host, port = address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return address


def private_directory() -> str:
    """A new directory only this user can enter (mode 0700), for a socket and its key."""
    return tempfile.mkdtemp(prefix="sanic-synchro-")


def runtime_directory() -> str:
    """This user's fixed directory for rendezvous files; refuses one that others could use."""
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


def _wait_for_exit(pid: int) -> None:
    """Return once process ``pid`` has exited."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:
        try:
            select.select([fd], [], [])
        finally:
            os.close(fd)
        return
    watching_parent = pid == os.getppid()
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        if watching_parent and os.getppid() != pid:
            return
        time.sleep(0.5)


def _remove_stale_socket(path: str) -> None:
    """Unlink a socket file left by a manager that died; refuse to replace a live one."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SynchroError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        return
    finally:
        probe.close()
    raise SynchroError(f"a manager is already serving on {path}")


def serve(
    address: Address,
    authkey: bytes,
    *,
    watch_pid: int | None = None,
    announce: Callable[[Address], None] | None = None,
    cleanup: tuple[str, ...] = (),
) -> None:
    """Serve the Store until SIGTERM/SIGINT, or until process ``watch_pid`` exits.

    ``announce`` is called with the bound address once clients can connect. Files in
    ``cleanup`` are removed on the way out (the socket file removes itself).
    """
    if isinstance(address, str):
        _remove_stale_socket(address)
    manager = StoreManager(address=address, authkey=authkey)
    server: Any = manager.get_server()

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    if watch_pid is not None:

        def watch() -> None:
            _wait_for_exit(watch_pid)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="synchro-watch", daemon=True).start()
    if announce is not None:
        announce(server.address)
    try:
        server.serve_forever()
    finally:
        for path in cleanup:
            with contextlib.suppress(OSError):
                os.unlink(path)
        sys.stdout.flush()
