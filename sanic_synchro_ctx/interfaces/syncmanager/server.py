"""The manager process's server: one Store, served to authenticated clients.

Each request calls one Store method and runs inside this process under the Store's lock:
one round trip per operation. A blocking client's connection is served by a thread of its
own (one request, one answer). The event loops' clients pipeline their requests (batches)
on one connection each; ONE thread serves all such connections, waking once for whatever
arrived on any of them, answering every complete request in order and writing each
connection's answers in one send. A client that stops reading gets its answers when it
reads again; past 4 MiB waiting, its requests are no longer read (it then waits on its
socket, not on the manager's memory); the others are never held up. A subscribed
connection is served by a thread of its own, and pushed to by publishes (:mod:`.push`).
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
import socket
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ...errors import SynchroError, SynchroValueError
from .push import serve_subscriber
from .store import Store
from .wire import (
    BLOCKING,
    READ_SIZE,
    SUBSCRIBER,
    Address,
    accept,
    answer,
    read_message,
    take_messages,
)

__all__ = ["ManagerServer", "serve"]

#: Seconds a new connection has to complete the handshake.
_HANDSHAKE_TIMEOUT = 10.0
#: Answers waiting for a client that stopped reading, in bytes, before its requests are no
#: longer read either.
_OUTPUT_LIMIT = 4 * 1_048_576
# poll(), not epoll: the same shape of API, and there on macOS too (a handful of sockets).
_READ = select.POLLIN
_WRITE = select.POLLOUT
_CLOSED = select.POLLHUP | select.POLLERR


class _Peer:
    """One pipelined connection: what was read but not answered, what waits to be sent."""

    __slots__ = ("events", "input", "output", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.events = _READ
        self.input = bytearray()
        self.output = bytearray()


class ManagerServer:
    """Serves one Store at ``address`` to clients that know ``authkey``."""

    def __init__(self, address: Address, authkey: bytes, *, lease_grace: bool = False) -> None:
        self.store = Store(lease_grace=lease_grace)
        #: New for every manager process: a client that meets an id it did not know is
        #: talking to a new, empty store.
        self.instance = uuid.uuid4().hex
        self._authkey = authkey
        self._methods = {name: getattr(self.store, name) for name in Store.EXPOSED}
        if isinstance(address, str):
            _remove_stale_socket(address)
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
            self._listener = socket.socket(family, socket.SOCK_STREAM)
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(address)
        self._listener.listen(128)
        self.address: Address = self._listener.getsockname()
        #: The socket file's inode: removed on exit only if the file is still this one.
        self.socket_inode: int | None = None
        if isinstance(address, str):
            self.address = address
            self.socket_inode = os.lstat(address).st_ino
        self._poller = select.poll()
        self._peers: dict[int, _Peer] = {}
        self._arrivals: list[socket.socket] = []
        self._arrivals_lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._poller.register(self._wake_r.fileno(), _READ)

    def serve_forever(self) -> None:
        """Accept connections until the process ends."""
        threading.Thread(
            target=self._serve_pipelined, name="synchro-pipelined", daemon=True
        ).start()
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    # -- one connection ---------------------------------------------------------------------

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(_HANDSHAKE_TIMEOUT)
        mode = accept(conn, self._authkey, self.instance)
        if mode is None:
            return
        conn.settimeout(None)
        if mode == BLOCKING:
            self._serve_blocking(conn)
            return
        if mode == SUBSCRIBER:
            serve_subscriber(conn, self.store.hub)
            return
        conn.setblocking(False)
        with self._arrivals_lock:
            self._arrivals.append(conn)
        with contextlib.suppress(BlockingIOError):
            self._wake_w.send(b"\0")

    def _answer(self, request: Any) -> bytes:
        try:
            method, args = request
            function = self._methods[method]
        except (KeyError, TypeError, ValueError):
            return answer(_refuse, (request,))
        return answer(function, args)

    def _serve_blocking(self, conn: socket.socket) -> None:
        buffer = bytearray()
        with conn:
            while True:
                try:
                    request = read_message(conn, buffer)
                except Exception:  # closed, broken, or not a request: drop the connection
                    return
                try:
                    conn.sendall(self._answer(request))
                except OSError:
                    return

    # -- the pipelined connections, all served by one thread -------------------------------

    def _serve_pipelined(self) -> None:
        wake = self._wake_r.fileno()
        peers = self._peers
        poller = self._poller
        while True:
            for fd, events in poller.poll():
                if fd == wake:
                    self._admit()
                    continue
                peer = peers.get(fd)
                if peer is None:
                    continue
                if events & (_READ | _CLOSED):
                    self._read(peer)
                if events & _WRITE and peer.sock.fileno() != -1:
                    self._flush(peer)

    def _admit(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass
        with self._arrivals_lock:
            arrivals, self._arrivals = self._arrivals, []
        for sock in arrivals:
            self._peers[sock.fileno()] = _Peer(sock)
            self._poller.register(sock.fileno(), _READ)

    def _read(self, peer: _Peer) -> None:
        try:
            data = peer.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(peer)
            return
        peer.input += data
        try:
            requests = take_messages(peer.input)
        except Exception:  # the client sent what is no request: drop it alone
            self._drop(peer)
            return
        if not requests:
            return
        waiting = bool(peer.output)  # then the socket is full: the write event sends
        for request in requests:
            peer.output += self._answer(request)
        if not waiting or len(peer.output) >= _OUTPUT_LIMIT:
            self._flush(peer)

    def _flush(self, peer: _Peer) -> None:
        output = peer.output
        try:
            sent = peer.sock.send(output)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(peer)
            return
        del output[:sent]
        # Wait for room only while something is left (a client that stopped reading), and
        # read no more requests from it while a lot is.
        events = _READ if len(output) < _OUTPUT_LIMIT else 0
        if output:
            events |= _WRITE
        if events != peer.events:
            peer.events = events
            self._poller.modify(peer.sock.fileno(), events)

    def _drop(self, peer: _Peer) -> None:
        fd = peer.sock.fileno()
        self._peers.pop(fd, None)
        with contextlib.suppress(OSError, KeyError):
            self._poller.unregister(fd)
        peer.sock.close()


def _refuse(request: Any) -> Any:
    raise SynchroValueError(f"the manager has no operation {str(request)[:80]}")


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


def _wait_for_exit(pid: int) -> None:
    """Return once process ``pid`` has exited."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:
        try:
            with selectors.DefaultSelector() as selector:  # select() fails past fd 1023
                selector.register(fd, selectors.EVENT_READ)
                selector.select()
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


def serve(
    address: Address,
    authkey: bytes,
    *,
    watch_pid: int | None = None,
    announce: Callable[[Address], None] | None = None,
    cleanup: tuple[str, ...] = (),
    lease_grace: bool = False,
) -> None:
    """Serve a Store until SIGTERM/SIGINT, or until process ``watch_pid`` exits.

    ``announce`` is called with the bound address once clients can connect. Files in
    ``cleanup`` (and the socket file) are removed on the way out.
    """
    server = ManagerServer(address, authkey, lease_grace=lease_grace)

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
        paths = (*cleanup, address) if isinstance(address, str) else cleanup
        for path in paths:
            with contextlib.suppress(OSError):
                if path == address and not _is_our_socket(path, server):
                    continue
                os.unlink(path)
        sys.stdout.flush()


def _is_our_socket(path: str, server: ManagerServer) -> bool:
    """Whether ``path`` is still the socket file this server bound (another manager may
    have been moved into place under the same name meanwhile)."""
    try:
        return os.lstat(path).st_ino == server.socket_inode
    except OSError:
        return False
