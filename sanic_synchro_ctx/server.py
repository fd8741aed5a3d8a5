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
import selectors
import socket
import threading
from multiprocessing.connection import Connection
from multiprocessing.managers import Server
from traceback import format_exc
from typing import Any

from .framing import READ_SIZE, frame, take_messages

__all__ = ["PIPELINED", "StoreServer"]

#: The request that hands a client connection over to the pipelined serving thread.
PIPELINED = "serve_pipelined"
#: Answers waiting for a client that stopped reading, in bytes, before its requests are
#: no longer read either (it then waits for the socket, not the server's memory).
_OUTPUT_LIMIT = 4 * 1_048_576


class _Peer:
    """One pipelined client connection: what was read but not answered, what waits to go."""

    __slots__ = ("input", "output", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.input = bytearray()
        self.output = bytearray()


class StoreServer(Server):
    """A manager server that also serves pipelined clients from one thread."""

    public: list[str] = [*Server.public, PIPELINED]  # noqa: RUF012 (the base class declares it so)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._selector: selectors.BaseSelector | None = None
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
            if self._selector is None:
                self._selector = selectors.DefaultSelector()
                self._selector.register(self._wake_r, selectors.EVENT_READ)
                serving = threading.Thread(
                    target=self._serve, args=(self._selector,), name="synchro-pipelined"
                )
                serving.daemon = True
                serving.start()
        with contextlib.suppress(BlockingIOError):
            self._wake_w.send(b"\0")

    # -- the serving thread -------------------------------------------------------------------

    def _serve(self, selector: selectors.BaseSelector) -> None:
        while True:
            for key, events in selector.select():
                if key.fileobj is self._wake_r:
                    self._admit(selector)
                    continue
                peer: _Peer = key.data
                if events & selectors.EVENT_READ:
                    self._read(selector, peer)
                if events & selectors.EVENT_WRITE and peer.sock.fileno() != -1:
                    self._flush(selector, peer)

    def _admit(self, selector: selectors.BaseSelector) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass
        with self._arrivals_lock:
            arrivals, self._arrivals = self._arrivals, []
        for sock in arrivals:
            selector.register(sock, selectors.EVENT_READ, _Peer(sock))

    def _read(self, selector: selectors.BaseSelector, peer: _Peer) -> None:
        try:
            data = peer.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(selector, peer)
            return
        peer.input += data
        try:
            requests = take_messages(peer.input)
        except Exception:  # not a request this server can read: the client is broken
            self._drop(selector, peer)
            return
        if not requests:
            return
        waiting = bool(peer.output)  # then the socket is full: the write event sends
        for request in requests:
            peer.output += self._answer(request)
        if not waiting or len(peer.output) >= _OUTPUT_LIMIT:
            self._flush(selector, peer)

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

    def _flush(self, selector: selectors.BaseSelector, peer: _Peer) -> None:
        output = peer.output
        try:
            sent = peer.sock.send(output)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(selector, peer)
            return
        del output[:sent]
        # Wait for room only while something is left (a client that stopped reading), and
        # read no more requests from it while a lot is.
        events = selectors.EVENT_READ if len(output) < _OUTPUT_LIMIT else 0
        if output:
            events |= selectors.EVENT_WRITE
        if selector.get_key(peer.sock).events != events:
            selector.modify(peer.sock, events, peer)

    def _drop(self, selector: selectors.BaseSelector, peer: _Peer) -> None:
        with contextlib.suppress(Exception):
            selector.unregister(peer.sock)
        peer.sock.close()
