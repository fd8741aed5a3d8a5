"""StoreServer: the manager's server, with one thread serving every pipelining client.

multiprocessing's manager server gives each client connection a thread of its own that
reads a request, answers it, and reads the next: two reads per request, and a thread
wake-up (with its hand-over of the GIL) for each. The workers' event loops pipeline their
requests (batches) on one connection each, so here they can be served differently: a
client asks for ``serve_pipelined`` instead of ``accept_connection`` after the usual
authentication, and from then on ONE thread serves all such connections, waking once for
whatever arrived on any of them, answering every complete request in order, and writing
each connection's answers in one send. Blocking clients keep multiprocessing's threads.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
from multiprocessing.connection import Connection
from multiprocessing.managers import Server
from traceback import format_exc
from typing import Any

from .framing import frame, receive

__all__ = ["PIPELINED", "StoreServer"]

#: The request that hands a client connection over to the pipelined serving thread.
PIPELINED = "serve_pipelined"
#: Answers waiting for a client that stopped reading, in bytes, before its requests are
#: no longer read either (it then waits for the socket, not the server's memory).
_OUTPUT_LIMIT = 4 * 1_048_576


class _Peer:
    """One pipelined client connection: what was read but not answered, what waits to go."""

    __slots__ = ("events", "input", "output", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.events = _READ
        self.input = bytearray()
        self.output = bytearray()


# poll(), not epoll: the same shape of API, and there on macOS too (a handful of sockets).
_READ = select.POLLIN
_WRITE = select.POLLOUT
_CLOSED = select.POLLHUP | select.POLLERR


class StoreServer(Server):
    """A manager server that also serves pipelined clients from one thread."""

    public: list[str] = [*Server.public, PIPELINED]  # noqa: RUF012 (the base class declares it so)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._poller: select.poll | None = None
        self._peers: dict[int, _Peer] = {}
        self._arrivals: list[socket.socket] = []
        self._arrivals_lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._started = threading.Lock()

    def serve_pipelined(self, conn: Connection) -> None:
        """Hand ``conn`` over to the pipelined serving thread (called for a client request).

        The answer to this request (sent by the caller once this returns) is the last thing
        written on the connection before the serving thread's answers: the client sends its
        first request only after reading it.
        """
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        sock.setblocking(False)
        with self._arrivals_lock:
            self._arrivals.append(sock)
        with self._started:
            if self._poller is None:
                self._poller = select.poll()
                self._poller.register(self._wake_r.fileno(), _READ)
                serving = threading.Thread(
                    target=self._serve, args=(self._poller,), name="synchro-pipelined"
                )
                serving.daemon = True
                serving.start()
        with contextlib.suppress(BlockingIOError):
            self._wake_w.send(b"\0")

    # -- the serving thread -------------------------------------------------------------------

    def _serve(self, poller: select.poll) -> None:
        wake = self._wake_r.fileno()
        peers = self._peers
        while True:
            for fd, events in poller.poll():
                if fd == wake:
                    self._admit(poller)
                    continue
                peer = peers.get(fd)
                if peer is None:
                    continue
                if events & (_READ | _CLOSED):
                    self._read(poller, peer)
                if events & _WRITE and peer.sock.fileno() != -1:
                    self._flush(poller, peer)

    def _admit(self, poller: select.poll) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass
        with self._arrivals_lock:
            arrivals, self._arrivals = self._arrivals, []
        for sock in arrivals:
            self._peers[sock.fileno()] = _Peer(sock)
            poller.register(sock.fileno(), _READ)

    def _read(self, poller: select.poll, peer: _Peer) -> None:
        try:
            requests = receive(peer.sock, peer.input)
        except Exception:  # the connection broke, or the client sent what is no request
            requests = None
        if requests is None:
            self._drop(poller, peer)
            return
        if not requests:
            return
        waiting = bool(peer.output)  # then the socket is full: the write event sends
        for request in requests:
            peer.output += self._answer(request)
        if not waiting or len(peer.output) >= _OUTPUT_LIMIT:
            self._flush(poller, peer)

    def _answer(self, request: Any) -> bytes:
        """One request's framed answer, as ``serve_client`` would give it."""
        try:
            ident, method, args, kwargs = request
            obj, exposed, _ = self.id_to_obj[ident]
            if method not in exposed:
                raise AttributeError(f"method {method!r} is not exposed")
            function = getattr(obj, method)
        except Exception:
            return frame(("#TRACEBACK", format_exc()))
        try:
            message = ("#RETURN", function(*args, **kwargs))
        except Exception as exc:
            message = ("#ERROR", exc)
        try:
            return frame(message)
        except Exception:
            return frame(("#UNSERIALIZABLE", format_exc()))

    def _flush(self, poller: select.poll, peer: _Peer) -> None:
        output = peer.output
        try:
            sent = peer.sock.send(output)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(poller, peer)
            return
        del output[:sent]
        # Wait for room only while something is left (a client that stopped reading), and
        # read no more requests from it while a lot is.
        events = _READ if len(output) < _OUTPUT_LIMIT else 0
        if output:
            events |= _WRITE
        if events != peer.events:
            peer.events = events
            poller.modify(peer.sock.fileno(), events)

    def _drop(self, poller: select.poll, peer: _Peer) -> None:
        fd = peer.sock.fileno()
        self._peers.pop(fd, None)
        with contextlib.suppress(OSError):
            poller.unregister(fd)
        peer.sock.close()
