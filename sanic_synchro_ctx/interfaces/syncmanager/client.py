"""Clients of a manager: a blocking one (a connection per thread) and one per event loop.

Both bound every wait by ``timeout``: connecting and the handshake, and each answer. A
connection that fails, times out or is interrupted mid-call is closed and never reused, so
a later call can never read a stale answer, and a request that may have run is never sent
again (an operation whose answer did not come: its effect is unknown). The one request sent
twice is one the manager cannot have run: a write refused because the manager had closed
the connection (it died, and a new one may already answer) goes out once more on a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ...notifications import Deliver, Listener
from .wire import (
    BLOCKING,
    PIPELINED,
    READ_SIZE,
    SUBSCRIBER,
    Address,
    connect,
    frame,
    read_message,
    result_of,
    take_messages,
)

__all__ = ["AsyncClient", "BlockingClient", "PushListener", "open_subscription"]

#: Called with the store instance id of every new connection.
InstanceHook = Callable[[str], None]


def _set_socket_timeouts(sock: socket.socket, seconds: float) -> None:
    """Bound every blocking read and write on ``sock``: a stalled call then raises
    BlockingIOError, and costs nothing extra per call (no poll before each read)."""
    whole = int(seconds)
    value = struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


#: A write failing with these means the peer closed the connection: a request not wholly
#: written never ran (the manager runs only whole requests).
_PEER_GONE = (BrokenPipeError, ConnectionResetError)


class _Local(threading.local):
    pid = 0  # class defaults: reading them never raises (a miss costs an exception)
    sock: socket.socket | None = None
    buffer: bytearray | None = None


class BlockingClient:
    """Calls the manager's Store: one request and one answer per call, on a connection of
    the calling thread (and process)."""

    def __init__(
        self,
        address: Address,
        authkey: bytes,
        *,
        timeout: float | None,
        on_instance: InstanceHook | None = None,
    ) -> None:
        self.address = address
        self.authkey = authkey
        self.timeout = timeout
        self._on_instance = on_instance
        self._local = _Local()

    def open(self) -> tuple[socket.socket, str]:
        """A new connection (any thread may open one for another to adopt)."""
        sock, instance = connect(self.address, self.authkey, BLOCKING, self.timeout)
        if self.timeout is not None:
            _set_socket_timeouts(sock, self.timeout)
        return sock, instance

    def adopt(self, sock: socket.socket, instance: str) -> None:
        """Make ``sock`` (from :meth:`open`) the calling thread's connection."""
        self.close()
        local = self._local
        local.sock, local.buffer, local.pid = sock, bytearray(), os.getpid()
        if self._on_instance is not None:
            self._on_instance(instance)

    def connected(self) -> bool:
        """Whether the calling thread has a connection (a call would not connect first)."""
        local = self._local
        return local.sock is not None and local.pid == os.getpid()

    def call(self, method: str, *args: Any) -> Any:
        local = self._local
        if local.sock is None or local.pid != os.getpid():
            self.adopt(*self.open())
        sock, buffer = local.sock, local.buffer
        assert sock is not None
        assert buffer is not None
        data = frame((method, args))
        try:
            try:
                sock.sendall(data)
            except _PEER_GONE:
                # The manager closed this idle connection (it died; a new one may have
                # taken its place) before the whole request was written, so it never ran:
                # it goes out once more, on a new connection. Past this point a failure
                # leaves its effect unknown and nothing is sent again.
                self.adopt(*self.open())
                sock, buffer = local.sock, local.buffer
                assert sock is not None
                assert buffer is not None
                sock.sendall(data)
            message = read_message(sock, buffer)
        except BlockingIOError:
            self.close()  # the socket timeout expired mid-call
            raise TimeoutError(f"no answer from the manager within {self.timeout} s") from None
        except BaseException:
            self.close()
            raise
        return result_of(message)

    def close(self) -> None:
        """Close the calling thread's connection (the next call connects again)."""
        local = self._local
        sock, local.sock, local.buffer = local.sock, None, None
        if sock is not None and local.pid == os.getpid():
            with contextlib.suppress(OSError):
                sock.close()


def _read_ready(sock: socket.socket, buffer: bytearray, what: str) -> list[Any]:
    """What a readable non-blocking ``sock`` brought: the messages now complete in
    ``buffer`` (none if the read would block). Raises when the connection is lost: OSError,
    EOFError when the manager closed it, or what a message that does not unpickle raised."""
    try:
        data = sock.recv(READ_SIZE)
    except (BlockingIOError, InterruptedError):
        return []
    if not data:
        raise EOFError(f"the manager closed the {what}")
    buffer += data
    return take_messages(buffer)


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
        self._waiters: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._buffer = bytearray()
        self._output = bytearray()  # what the socket did not take yet
        self._timer: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        loop.add_reader(self._fd, self._readable)

    @property
    def open(self) -> bool:
        return self.sock is not None

    def request(self, message: Any) -> asyncio.Future[Any]:
        """Send one request; the future gets its answer message."""
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
        future: asyncio.Future[Any] = loop.create_future()
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
            messages = _read_ready(sock, self._buffer, "connection")
        except Exception as exc:
            self._lose(exc)
            return
        waiters = self._waiters
        for message in messages:
            if not waiters:
                break
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


class AsyncClient:
    """Calls the manager's Store from one event loop, without ever blocking it.

    Requests go back to back on one connection and are answered in order, so an answer
    always reaches the call it belongs to, even when that caller was cancelled meanwhile
    (the answer is then read and dropped: the connection stays usable). Connecting runs
    off the loop, bounded by ``timeout``, as is each answer; when it passes, or the
    connection is lost, every waiting call fails and the next call connects again.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        address: Address,
        authkey: bytes,
        *,
        timeout: float | None,
        on_instance: InstanceHook | None = None,
    ) -> None:
        self._loop = loop
        self._address = address
        self._authkey = authkey
        self._timeout = timeout
        self._on_instance = on_instance
        self._connection: _Connection | None = None
        self._connecting: asyncio.Future[_Connection] | None = None

    async def _connect(self) -> _Connection:
        if self._connecting is not None:  # another call is connecting: share its outcome
            return await asyncio.shield(self._connecting)
        connecting = self._connecting = self._loop.create_future()
        try:
            # The handshake blocks: run it off the loop (it is bounded by the timeout).
            job = self._loop.run_in_executor(
                None, connect, self._address, self._authkey, PIPELINED, self._timeout
            )
            try:
                sock, instance = await asyncio.shield(job)
            except asyncio.CancelledError:
                job.add_done_callback(_close_socket)  # it may still connect: close that
                raise
            connection = _Connection(self._loop, sock, self._timeout)
            self._connection = connection
            if self._on_instance is not None:
                self._on_instance(instance)
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
        try:
            answer = connection.request((method, args))
        except _PEER_GONE:
            # Closed by the manager before the loop read its EOF; nothing of this request
            # was written (see BlockingClient.call): once more, on a new connection.
            answer = (await self._connect()).request((method, args))
        return result_of(await answer)

    def close(self) -> None:
        """Close the connection, from any thread (a later call connects again)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _close_socket(job: asyncio.Future[tuple[socket.socket, str]]) -> None:
    if not job.cancelled() and job.exception() is None:
        job.result()[0].close()


def open_subscription(
    address: Address, authkey: bytes, channels: list[str], timeout: float | None
) -> tuple[socket.socket, str, bytearray]:
    """A subscribed connection to the manager (blocking: run it off the loop): live when
    this returns. The socket, the store's instance id, and what was read past the answer."""
    sock, instance = connect(address, authkey, SUBSCRIBER, timeout)
    try:
        sock.settimeout(timeout)
        sock.sendall(frame(("subscribe", (channels,))))
        buffer = bytearray()
        try:
            result_of(read_message(sock, buffer))
        except EOFError:
            raise ConnectionResetError("the manager refused the subscription") from None
        return sock, instance, buffer
    except BaseException:
        sock.close()
        raise


class PushListener(Listener):
    """Reads what the manager pushes on a subscribed connection, on the loop's reader
    callback, and hands each message to ``deliver``."""

    def __init__(self, sock: socket.socket, buffer: bytearray, deliver: Deliver) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._sock: socket.socket | None = sock
        self._fd = sock.fileno()
        self._buffer = buffer
        self._deliver = deliver
        sock.setblocking(False)
        self._loop.add_reader(self._fd, self._readable)
        if buffer:  # pushed right behind the answer, and read with it
            try:
                messages = take_messages(buffer)
            except Exception as exc:
                self._end(exc)
                return
            self._hand_over(messages)

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            messages = _read_ready(sock, self._buffer, "subscription")
        except Exception as exc:
            self._end(exc)
            return
        self._hand_over(messages)

    def _hand_over(self, messages: list[Any]) -> None:
        deliver = self._deliver
        for channel, data, dropped in messages:
            deliver(channel, data, dropped)

    def _end(self, exc: BaseException) -> None:
        self._release()
        self.lose(exc)

    def _release(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
            sock.close()

    async def aclose(self) -> None:
        self._release()
        await super().aclose()
