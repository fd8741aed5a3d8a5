"""NetworkInterface: the base of interfaces that talk to a server through an async client.

A network client is bound to the event loop it first ran on, so a network interface keeps
one client ("session") per loop (:class:`~sanic_synchro_ctx.sessions.LoopSessions`): the
async front end uses the session of the caller's loop, natively; the blocking front end
runs the operation on the bridge's private loop (one per calling thread) with the session
opened there. Sessions are closed when the server stops and when the bridge closes a
private loop; sessions of loops that closed without that are dropped.

A subclass implements :meth:`open_session` and :meth:`close_session`, and the primitives.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections import Counter
from collections.abc import Awaitable, Coroutine
from typing import Any, Generic, TypeVar

from ..batching import Batcher
from ..bridge import bridge
from ..sessions import LoopSessions
from .base import BaseSynchroInterface

__all__ = ["NetworkInterface"]

S = TypeVar("S")
T = TypeVar("T")


class NetworkInterface(BaseSynchroInterface, Generic[S]):
    """Base of interfaces that talk to a server: one session (client) per event loop."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._sessions: LoopSessions[S] = LoopSessions(self.close_session)

    @abstractmethod
    async def open_session(self) -> S:
        """A new session (client, pool) for the running loop."""

    @abstractmethod
    async def close_session(self, session: S) -> None:
        """Close a session, on the loop it belongs to."""

    def _session(self) -> S | Awaitable[S]:
        """The running loop's session, or an awaitable of it when it must be opened."""
        session = self._sessions.current()
        if session is not None:
            return session
        return self._sessions.open(self.open_session)

    async def session(self) -> S:
        """The running loop's session (opened on first use)."""
        session = self._sessions.current()
        if session is None:
            session = await self._sessions.open(self.open_session)
        return session

    async def pipeline_batcher(self) -> Batcher[Any] | None:
        batcher: Batcher[Any] | None = getattr(await self.session(), "batcher", None)
        return batcher

    async def close_loop(self) -> None:
        await self._sessions.close_current()

    @property
    def batch_sizes(self) -> Counter[int]:
        """Round trips of the async front end in this process, by operations carried (empty
        when batching is off)."""
        return self._sessions.batch_sizes

    # -- blocking front end ---------------------------------------------------------------

    def run_blocking(self, coro: Coroutine[Any, Any, T]) -> T:
        return bridge.run(coro)

    # -- life cycle -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the sessions of the running loop and of this thread's bridge loop."""
        await self._sessions.close_current()
        self._close_private()

    def close_thread(self) -> None:
        """Close the session of this thread's bridge loop (other loops keep theirs)."""
        self._close_private()

    def close(self) -> None:
        """Close the session of this thread's bridge loop; drop the sessions of other loops."""
        self._close_private()
        self._sessions.drop()

    def _close_private(self) -> None:
        with contextlib.suppress(Exception):
            self._sessions.close_private()
