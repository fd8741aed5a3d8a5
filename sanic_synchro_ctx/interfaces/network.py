"""NetworkInterface: what Redis and memcached interfaces share.

A network client is bound to the event loop it first ran on, so a network interface keeps
one client ("session") per loop: the async front end uses the session of the caller's loop,
natively; the blocking front end runs the operation on the bridge's private loop (one per
calling thread) with the session opened there. Sessions are closed when the server stops
(after_server_stop) and when the bridge closes a private loop; sessions of loops that closed
without that are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import Awaitable, Coroutine
from typing import Any, Generic, TypeVar

from ..batching import total_sizes
from ..bridge import bridge
from .base import BaseSynchroInterface

__all__ = ["NetworkInterface", "bounded"]

S = TypeVar("S")
T = TypeVar("T")


async def bounded(awaitable: Awaitable[T], timeout: float | None) -> T:
    """Await ``awaitable`` for at most ``timeout`` seconds (None: no bound); TimeoutError
    (cancelling it) when it takes longer."""
    if timeout is None:
        return await awaitable
    if _timeout is None:  # Python 3.10
        return await asyncio.wait_for(awaitable, timeout)
    async with _timeout(timeout):
        return await awaitable


_timeout = getattr(asyncio, "timeout", None)  # Python >= 3.11: no task per call


class NetworkInterface(BaseSynchroInterface, Generic[S]):
    """Base of interfaces that talk to a server: one session (client) per event loop."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._sessions: dict[asyncio.AbstractEventLoop, S] = {}
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._recent: tuple[asyncio.AbstractEventLoop, S] | None = None
        self._mutex = threading.Lock()

    # -- what each network interface provides ---------------------------------------------

    async def _open(self) -> S:
        """A new session for the running loop."""
        raise NotImplementedError

    async def _shut(self, session: S) -> None:
        """Close a session, on the loop it belongs to."""
        raise NotImplementedError

    # -- sessions -------------------------------------------------------------------------

    def _cached(self) -> S | None:
        """The running loop's session when it is open (the fast path: no coroutine)."""
        recent = self._recent
        if recent is not None and recent[0] is asyncio.get_running_loop():
            return recent[1]
        return None

    async def _session(self) -> S:
        recent = self._recent
        loop = asyncio.get_running_loop()
        if recent is not None and recent[0] is loop:
            return recent[1]
        session = self._sessions.get(loop)
        if session is None:
            session = await self._open_for(loop)
        self._recent = (loop, session)
        return session

    async def _open_for(self, loop: asyncio.AbstractEventLoop) -> S:
        with self._mutex:
            for dead in [other for other in self._sessions if other.is_closed()]:
                self._forget(dead)
            gate = self._opening.setdefault(loop, asyncio.Lock())
        async with gate:
            session = self._sessions.get(loop)
            if session is None:
                session = await self._open()
                with self._mutex:
                    self._sessions[loop] = session
                if bridge.is_private(loop):
                    bridge.on_close(loop, self._close_current)
            return session

    def _forget(self, loop: asyncio.AbstractEventLoop) -> S | None:
        self._opening.pop(loop, None)
        recent = self._recent
        if recent is not None and recent[0] is loop:
            self._recent = None
        return self._sessions.pop(loop, None)

    async def _close_current(self) -> None:
        """Close the running loop's session (it reopens on next use)."""
        with self._mutex:
            session = self._forget(asyncio.get_running_loop())
        if session is not None:
            await self._shut(session)

    @property
    def batch_sizes(self) -> Counter[int]:
        """Round trips of the async front end in this process, by operations carried (empty
        when batching is off)."""
        sessions = list(self._sessions.values())
        return total_sizes(getattr(session, "batcher", None) for session in sessions)

    # -- blocking front end ---------------------------------------------------------------

    def run_blocking(self, coro: Coroutine[Any, Any, T]) -> T:
        return bridge.run(coro)

    # -- life cycle -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the sessions of the running loop and of this thread's bridge loop."""
        await self._close_current()
        self._close_private()

    def close(self) -> None:
        """Close the session of this thread's bridge loop; drop the sessions of other loops."""
        self._close_private()
        with self._mutex:
            for other in list(self._sessions):
                self._forget(other)

    def _close_private(self) -> None:
        loop = bridge.loop
        if loop is not None and loop in self._sessions and not loop.is_running():
            with contextlib.suppress(Exception):
                bridge.run(self._close_current())
