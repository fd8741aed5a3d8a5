"""Per-event-loop sessions: what an interface keeps for each event loop it runs on.

A network client (a Redis pool, a memcached client, a manager connection) belongs to the
event loop it was created on. An interface therefore keeps one session per loop: the
caller's loop on the async front end, the bridge's private loop of the calling thread on
the blocking one. :class:`LoopSessions` is that bookkeeping, written once: the running
loop's session found without a coroutine (a recent-loop cache), one opener per loop,
sessions of loops that closed dropped, sessions of the bridge's private loops closed
before those loops close, and the batch sizes of every session's batcher added up.
"""

from __future__ import annotations

import asyncio
import threading
from asyncio import events
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from .batching import total_sizes
from .bridge import bridge

__all__ = ["LoopSessions"]

S = TypeVar("S")


class LoopSessions(Generic[S]):
    """One session per event loop. ``shut(session)`` closes one, on its own loop.

    A session may have a ``batcher`` attribute (a :class:`~.batching.Batcher`); then
    :attr:`batch_sizes` counts its round trips.
    """

    def __init__(self, shut: Callable[[S], Awaitable[None]]) -> None:
        self._shut = shut
        self._sessions: dict[asyncio.AbstractEventLoop, S] = {}
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._recent: tuple[asyncio.AbstractEventLoop, S] | None = None
        self._mutex = threading.Lock()
        self._retired: Counter[int] = Counter()  # round trips of sessions forgotten since

    def current(self) -> S | None:
        """The running loop's session, if it has one (no coroutine: the fast path)."""
        loop = events._get_running_loop()
        recent = self._recent
        if recent is not None and recent[0] is loop:
            return recent[1]
        if loop is None:
            return None
        session = self._sessions.get(loop)
        if session is not None:
            self._recent = (loop, session)
        return session

    def install(self, session: S) -> S:
        """Make ``session`` the running loop's (opened without awaiting anything)."""
        loop = asyncio.get_running_loop()
        with self._mutex:
            self._prune()
            self._sessions[loop] = session
        self._recent = (loop, session)
        if bridge.is_private(loop):
            bridge.on_close(loop, self.close_current)
        return session

    async def open(self, make: Callable[[], Awaitable[S]]) -> S:
        """The running loop's session, opened with ``make()`` if it has none (one opener
        per loop: concurrent callers share its outcome)."""
        session = self.current()
        if session is not None:
            return session
        loop = asyncio.get_running_loop()
        with self._mutex:
            self._prune()
            gate = self._opening.setdefault(loop, asyncio.Lock())
        async with gate:
            session = self._sessions.get(loop)
            if session is None:
                session = self.install(await make())
            self._recent = (loop, session)
            return session

    def _prune(self) -> None:
        """Drop the sessions of loops that closed without closing them (caller holds the
        mutex): their clients cannot be awaited any more."""
        for dead in [loop for loop in self._sessions if loop.is_closed()]:
            self._forget(dead)

    def _forget(self, loop: asyncio.AbstractEventLoop) -> S | None:
        self._opening.pop(loop, None)
        recent = self._recent
        if recent is not None and recent[0] is loop:
            self._recent = None
        session = self._sessions.pop(loop, None)
        self._retired.update(total_sizes([getattr(session, "batcher", None)]))
        return session

    async def close_current(self) -> None:
        """Close the running loop's session (it opens again on next use)."""
        loop = events._get_running_loop()
        if loop is None:  # driven inline, outside any loop: no session to close
            return
        with self._mutex:
            session = self._forget(loop)
        if session is not None:
            await self._shut(session)

    def drop(self, loop: asyncio.AbstractEventLoop | None = None) -> list[S]:
        """Forget the sessions of ``loop`` (of every loop if None) without closing them;
        the caller closes what it can from where it is."""
        with self._mutex:
            loops = list(self._sessions) if loop is None else [loop]
            return [s for s in (self._forget(one) for one in loops) if s is not None]

    def close_private(self) -> None:
        """Close the session of this thread's bridge loop, if it has one and is idle."""
        loop = bridge.loop
        if loop is not None and loop in self._sessions and not loop.is_running():
            bridge.run(self.close_current())

    def all(self) -> list[S]:
        with self._mutex:
            return list(self._sessions.values())

    @property
    def batch_sizes(self) -> Counter[int]:
        """Round trips of every session's batcher, by operations carried (those of sessions
        closed since included: a blocking caller's thread that ended, a loop that closed)."""
        with self._mutex:
            retired = self._retired.copy()
        return retired + total_sizes(getattr(session, "batcher", None) for session in self.all())

    def __len__(self) -> int:
        return len(self._sessions)
