"""The manager's side of a subscribed connection: messages pushed, never waited for.

A publish hands each subscriber's connection its message through :meth:`Pusher.deliver`,
under the hub's lock, from whichever thread served the publish. Delivering never blocks:
an idle connection gets the message in a non-blocking send right away; what the socket
does not take waits in the connection's queue, which a thread of its own writes out. A
subscriber that stops reading has up to :data:`QUEUE_LIMIT` bytes queued for it; past
that, new messages for it are dropped and counted, and the count travels with the next
message it does get (its ``sub.dropped`` then says so). No publisher ever waits for a
subscriber, and the manager's memory stays bounded.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import deque
from typing import Any

from .hub import Hub
from .wire import frame, read_message

__all__ = ["QUEUE_LIMIT", "Pusher", "serve_subscriber"]

#: Bytes queued for one subscriber that does not read, before messages for it are dropped.
QUEUE_LIMIT = 4 * 1_048_576
#: Seconds a new subscriber has to send its subscription.
_REQUEST_TIMEOUT = 10.0


class Pusher:
    """One subscribed connection: delivers messages to it without ever blocking."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queue: deque[bytes] = deque()
        self._queued = 0
        # True while the writer thread sends outside the lock (then new messages queue);
        # also while the subscription is being confirmed
        self._sending = True
        self._dropped = 0  # messages dropped since the last one queued
        self._closed = False

    def deliver(self, channel: str, data: bytes, dropped: int = 0) -> None:
        with self._lock:
            if self._closed:
                return
            message = frame((channel, data, self._dropped + dropped))
            if self._queued + len(message) > QUEUE_LIMIT:
                self._dropped += 1 + dropped
                return
            self._dropped = 0
            if not self._sending and not self._queue:
                try:
                    sent = self.sock.send(message, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    self._close_locked()
                    return
                if sent == len(message):
                    return
                message = message[sent:]
            self._queue.append(message)
            self._queued += len(message)
            self._ready.notify()

    def confirmed(self) -> None:
        """The subscription's answer was sent: deliver directly from now on."""
        with self._lock:
            self._sending = False
            if self._queue:
                self._ready.notify()

    def write(self) -> None:
        """The writer thread: send what was queued, in order, until the connection closes."""
        while True:
            with self._lock:
                self._ready.wait_for(lambda: (self._queue and not self._sending) or self._closed)
                if self._closed:
                    return
                data = b"".join(self._queue)
                self._queue.clear()
                self._queued = 0
                self._sending = True
            try:
                self.sock.sendall(data)
            except OSError:
                self.close()
                return
            with self._lock:
                self._sending = False

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        self._closed = True
        self._queue.clear()
        self._ready.notify_all()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


def serve_subscriber(conn: socket.socket, hub: Hub) -> None:
    """Serve a subscribed connection until the subscriber closes it."""
    buffer = bytearray()
    with conn:
        try:
            conn.settimeout(_REQUEST_TIMEOUT)
            request: Any = read_message(conn, buffer)
            method, (channels,) = request
            if method != "subscribe" or not isinstance(channels, list) or not channels:
                return
            if not all(isinstance(channel, str) for channel in channels):
                return
            conn.settimeout(None)
        except Exception:  # closed, too slow, or not a subscription: drop the connection
            return
        pusher = Pusher(conn)
        # subscribed before the answer goes out (what is published from then on queues
        # behind it), so the subscription is live when the subscriber reads the answer
        hub.add(channels, pusher.deliver)
        writer = threading.Thread(target=pusher.write, name="synchro-push", daemon=True)
        try:
            conn.sendall(frame((True, None)))
            pusher.confirmed()
            writer.start()
            while conn.recv(4096):  # a subscriber sends nothing more: wait for its close
                pass
        except OSError:
            pass
        finally:
            hub.remove(channels, pusher.deliver)
            pusher.close()
            if writer.is_alive():
                writer.join()
