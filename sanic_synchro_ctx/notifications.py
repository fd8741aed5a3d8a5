"""Publish/subscribe across workers: subscriptions, their bounded buffers, reconnection.

An interface delivers what it receives for a subscription through one callback,
``deliver(channel, data, dropped)`` (the full channel name, the serialized message, and
how many messages the backend itself dropped just before this one), from whatever thread
receives it, and reports the loss of its connection through a :class:`Listener`. Everything
else is here, once: the per-subscriber buffer (:class:`Mailbox`: at most ``max_pending``
messages, the oldest dropped and counted, so a subscriber that never reads never holds up
a publisher nor grows memory without bound), reconnecting after a loss (messages published
meanwhile are lost: delivery is at most once), and the two front ends' subscription objects.

A blocking subscription runs its listener on an event loop of its own, in a thread of its
own, so that messages are read (and old ones dropped) while the caller does other work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .deadlines import bounded
from .errors import SynchroError, SynchroValueError

if TYPE_CHECKING:
    from .interfaces.base import BaseSynchroInterface

__all__ = [
    "DEFAULT_MAX_PENDING",
    "RETRY_FIRST",
    "RETRY_LAST",
    "BlockingSubscription",
    "Deliver",
    "Listener",
    "Mailbox",
    "Subscription",
]

_log = logging.getLogger("sanic_synchro_ctx")

#: Messages a subscriber's buffer holds before the oldest is dropped.
DEFAULT_MAX_PENDING = 1000
#: Seconds between attempts to subscribe again (a lost connection, or on_message handlers
#: whose subscription failed): doubling from the first to the last.
RETRY_FIRST = 0.05
RETRY_LAST = 2.0
#: Seconds a blocking subscription waits for its thread to subscribe (each interface
#: bounds that by its own timeout first).
_START_LIMIT = 60.0

#: ``deliver(full channel, serialized message, dropped by the backend before it)``
Deliver = Callable[[str, bytes, int], None]


class Listener:
    """One live subscription on a backend. The interface delivers its messages through
    the ``deliver`` callback it was given and calls :meth:`lose` when the connection is
    gone; :meth:`aclose` ends it (a subclass releases its connection there)."""

    def __init__(self) -> None:
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def lose(self, exc: BaseException) -> None:
        """The subscription's connection is gone (from the listener's loop thread)."""
        if not self._ended.done():
            self._ended.set_exception(exc)

    async def ended(self) -> None:
        """Wait while the subscription lives; raise the error that ended it."""
        await asyncio.shield(self._ended)

    async def aclose(self) -> None:
        """Stop listening and release the connection."""
        if not self._ended.done():
            self._ended.cancel()


class Mailbox:
    """A subscriber's buffer: thread-safe, at most ``max_pending`` messages; a message
    arriving when it is full pushes the oldest out (counted in :attr:`dropped`). Filled
    from any thread; read by one task (:meth:`get_async`) or one thread (:meth:`get`)."""

    def __init__(self, max_pending: int) -> None:
        self._items: deque[tuple[str, bytes]] = deque()
        self._max = max_pending
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None
        self.dropped = 0
        self._closed = False

    def put(self, channel: str, data: bytes, dropped: int = 0) -> None:
        with self._lock:
            if self._closed:
                return
            self.dropped += dropped
            if len(self._items) >= self._max:
                self._items.popleft()
                self.dropped += 1
            self._items.append((channel, data))
            self._ready.notify()
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            loop, future = waiter
            if asyncio.events._get_running_loop() is loop:
                _wake(future)
            else:
                with contextlib.suppress(RuntimeError):  # its loop closed meanwhile
                    loop.call_soon_threadsafe(_wake, future)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._ready.notify_all()
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            with contextlib.suppress(RuntimeError):
                waiter[0].call_soon_threadsafe(_wake, waiter[1])

    def get(self, timeout: float | None) -> tuple[str, bytes] | None:
        """The oldest message, waiting up to ``timeout`` seconds (None: no bound); None when
        nothing came in time (or the mailbox is closed)."""
        with self._lock:
            if not self._items and not self._closed:
                if timeout is None:
                    self._ready.wait_for(lambda: self._items or self._closed)
                elif timeout > 0:
                    self._ready.wait_for(lambda: self._items or self._closed, timeout)
            return self._items.popleft() if self._items else None

    async def get_async(self, timeout: float | None) -> tuple[str, bytes] | None:
        """:meth:`get` for a task: waits without blocking its loop."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._lock:
                if self._items:
                    return self._items.popleft()
                if self._closed:
                    return None
                future: asyncio.Future[None] = loop.create_future()
                self._waiter = (loop, future)
            try:
                if deadline is None:
                    await future
                else:
                    left = deadline - loop.time()
                    if left <= 0:
                        return None
                    with contextlib.suppress(asyncio.TimeoutError):
                        await bounded(future, left)
            finally:
                with self._lock:
                    if self._waiter is not None and self._waiter[1] is future:
                        self._waiter = None


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def check_max_pending(max_pending: Any) -> int:
    if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
        raise SynchroValueError(f"max_pending must be an int >= 1, got {max_pending!r}")
    return max_pending


def check_wait(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise SynchroValueError(f"timeout must be a number of seconds or None, got {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise SynchroValueError(f"timeout must be >= 0 seconds, got {timeout!r}")
    return None if math.isinf(timeout) else float(timeout)


class Subscription:
    """``async with synchro.subscribe("flags") as sub: async for channel, message in sub``.

    Live once the ``async with`` block is entered (SynchroConnectionError if the backend
    cannot be reached then). If the connection is lost later, it subscribes again by itself
    (:attr:`reconnects` counts it; what was published meanwhile is lost), retrying until the
    block is left. ``channel`` comes back as given, without the namespace.
    """

    def __init__(
        self,
        interface: BaseSynchroInterface,
        channels: tuple[str, ...],
        max_pending: int,
        *,
        mailbox: Mailbox | None = None,
    ) -> None:
        self._interface = interface
        self.channels = channels
        self._full = [interface.channel_name(channel) for channel in channels]
        self._cut = len(self._full[0]) - len(channels[0])
        self._mailbox = mailbox if mailbox is not None else Mailbox(check_max_pending(max_pending))
        self._listener: Listener | None = None
        self._keeper: asyncio.Task[None] | None = None
        #: How many times the subscription was made again after its connection was lost.
        self.reconnects = 0

    @property
    def dropped(self) -> int:
        """Messages dropped because this subscriber's buffer (or the backend's buffer for
        it) was full."""
        return self._mailbox.dropped

    def _deliver(self, channel: str, data: bytes, dropped: int) -> None:
        self._mailbox.put(channel[self._cut :], data, dropped)

    async def __aenter__(self) -> Subscription:
        if self._listener is not None:
            raise SynchroError("this subscription is already open")
        self._listener = await self._interface.listen(self._full, self._deliver)
        self._keeper = asyncio.get_running_loop().create_task(self._keep())
        return self

    async def _keep(self) -> None:
        """Subscribe again whenever the connection is lost, until the block is left."""
        while True:
            listener = self._listener
            assert listener is not None
            try:
                await listener.ended()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("subscription to %s lost (%s); subscribing again", self.channels, exc)
            with contextlib.suppress(Exception):
                await listener.aclose()
            delay = RETRY_FIRST
            while True:
                try:
                    self._listener = await self._interface.listen(self._full, self._deliver)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    _log.debug("subscribing to %s failed: %s", self.channels, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_LAST)
            self.reconnects += 1

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        keeper, self._keeper = self._keeper, None
        try:
            if keeper is not None:
                keeper.cancel()
                # its CancelledError is returned, not raised: a cancellation of the caller
                # while it waits here still propagates
                await asyncio.gather(keeper, return_exceptions=True)
        finally:
            listener, self._listener = self._listener, None
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.aclose()

    async def get(self, timeout: float | None = None) -> tuple[str, Any] | None:
        """The next ``(channel, message)``, waiting up to ``timeout`` seconds (None: as long
        as it takes); None when nothing arrived in time."""
        self._check_open()
        item = await self._mailbox.get_async(check_wait(timeout))
        return None if item is None else (item[0], self._interface.message_of(item[1]))

    def __aiter__(self) -> AsyncIterator[tuple[str, Any]]:
        return self

    async def __anext__(self) -> tuple[str, Any]:
        self._check_open()
        item = await self._mailbox.get_async(None)
        if item is None:
            raise StopAsyncIteration
        return item[0], self._interface.message_of(item[1])

    def _check_open(self) -> None:
        if self._listener is None:
            raise SynchroError(
                "use the subscription inside its block: async with synchro.subscribe(...) as sub"
            )

    def __repr__(self) -> str:
        return f"<Subscription {list(self.channels)} dropped={self.dropped}>"


class BlockingSubscription:
    """``with synchro.sync.subscribe("flags") as sub:`` then ``sub.get(timeout=...)``.

    A thread of its own reads the subscription (on an event loop of its own) into the
    buffer, so messages keep arriving, and old ones are dropped past ``max_pending``,
    while the caller does other work.
    """

    def __init__(
        self,
        interface: BaseSynchroInterface,
        channels: tuple[str, ...],
        max_pending: int,
    ) -> None:
        self._mailbox = Mailbox(check_max_pending(max_pending))
        self._subscription = Subscription(interface, channels, max_pending, mailbox=self._mailbox)
        self.channels = channels
        self._interface = interface
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None

    @property
    def dropped(self) -> int:
        return self._mailbox.dropped

    @property
    def reconnects(self) -> int:
        return self._subscription.reconnects

    def __enter__(self) -> BlockingSubscription:
        if self._thread is not None:
            raise SynchroError("this subscription is already open")
        thread = threading.Thread(target=self._run, name="synchro-subscription", daemon=True)
        self._thread = thread
        thread.start()
        # listen() is bounded by the interface's timeout; this bound only guards that
        if not self._started.wait(_START_LIMIT):
            self._shut()
            raise SynchroError("the subscription did not start in time")
        if self._failure is not None:
            self._thread.join()
            self._thread = None
            raise self._failure
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                async with self._subscription:
                    self._started.set()
                    await self._stop.wait()
            except BaseException as exc:
                if self._started.is_set():
                    raise
                self._failure = exc
                self._started.set()
            finally:
                await self._interface.close_loop()  # what listening opened on this loop

        try:
            asyncio.run(main())
        except Exception:
            _log.exception("a blocking subscription's thread failed")
        finally:
            self._mailbox.close()

    def get(self, timeout: float | None = None) -> tuple[str, Any] | None:
        """The next ``(channel, message)``, waiting up to ``timeout`` seconds (None: as long
        as it takes); None when nothing arrived in time."""
        if self._thread is None:
            raise SynchroError(
                "use the subscription inside its block: with synchro.sync.subscribe(...) as sub"
            )
        item = self._mailbox.get(check_wait(timeout))
        return None if item is None else (item[0], self._interface.message_of(item[1]))

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        while True:
            item = self.get()
            if item is None:  # closed
                return
            yield item

    def _shut(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        thread = self._thread
        if thread is not None:
            thread.join(30.0)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._shut()
        self._thread = None

    def __repr__(self) -> str:
        return f"<BlockingSubscription {list(self.channels)} dropped={self.dropped}>"
