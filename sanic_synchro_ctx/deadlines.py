"""Bounded waits: ``await bounded(awaitable, timeout)``, with one timer per event loop.

Every network wait is bounded, so every operation of an interface whose client has no
timeouts of its own (asyncio_redis, aiomcache) goes through one. ``asyncio.timeout`` arms
a timer per wait and cancels it afterwards: about 10 µs per operation on a 2-core VM (a
timer handle, a heap push, and the heap's cleanup of cancelled timers in later loop
passes), a tenth of a whole memcached round trip there. Here the waits of a loop share
ONE timer, armed for the earliest deadline; a wait that ends first only leaves the
loop's table of waits. When the timer fires, the waits past their deadline are cancelled
(converted to TimeoutError exactly as ``asyncio.timeout`` does it: only if nobody else
cancelled the task meanwhile) and the timer is armed for the next deadline.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from asyncio import events, tasks
from collections.abc import Awaitable
from typing import Any, TypeVar

from .cancellation import COUNTED

__all__ = ["bounded"]

T = TypeVar("T")


class _Wait:
    """One bounded wait: its task, its deadline (loop time), and whether it expired."""

    __slots__ = ("cancelling", "deadline", "expired", "task")

    def __init__(self, task: Any, deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        self.cancelling = task.cancelling()
        self.expired = False


class _Deadlines:
    """The bounded waits of one event loop, and the one timer that ends them."""

    __slots__ = ("_armed", "_handle", "_loop", "_waits")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waits: dict[_Wait, None] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._armed = math.inf  # the deadline the timer is set for

    def add(self, wait: _Wait) -> None:
        self._waits[wait] = None
        if wait.deadline < self._armed:
            self._arm(wait.deadline)

    def remove(self, wait: _Wait) -> None:
        self._waits.pop(wait, None)

    def _arm(self, deadline: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_at(deadline, self._expire)
        self._armed = deadline

    def _expire(self) -> None:
        self._handle = None
        self._armed = math.inf
        now = self._loop.time()
        nearest = math.inf
        for wait in list(self._waits):
            if wait.deadline <= now:
                del self._waits[wait]
                wait.expired = True
                wait.task.cancel()
            elif wait.deadline < nearest:
                nearest = wait.deadline
        if nearest < math.inf:
            self._arm(nearest)


_tables: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = (
    weakref.WeakKeyDictionary()
)
#: The last loop asked for and its table: one identity check instead of a weak lookup.
_last: tuple[Any, Any] = (None, None)


def _deadlines(loop: asyncio.AbstractEventLoop) -> _Deadlines:
    global _last
    last = _last  # one read: another thread may replace it meanwhile
    if last[0] is loop:
        table: _Deadlines = last[1]
        return table
    table = _tables.get(loop) or _tables.setdefault(loop, _Deadlines(loop))
    _last = (loop, table)
    return table


async def bounded(awaitable: Awaitable[T], timeout: float | None) -> T:
    """Await ``awaitable`` for at most ``timeout`` seconds (None: no bound); TimeoutError
    (cancelling it) when it takes longer."""
    if timeout is None:
        return await awaitable
    loop = events.get_running_loop()
    task: Any = tasks.current_task(loop)  # Any: Task.uncancel is Python >= 3.11
    if task is None or not COUNTED:  # Python 3.10: no way to tell whose cancellation
        return await asyncio.wait_for(awaitable, timeout)
    table = _deadlines(loop)
    wait = _Wait(task, loop.time() + timeout)
    table.add(wait)
    try:
        result = await awaitable
    except BaseException as exc:
        table.remove(wait)
        if wait.expired:
            ours = task.uncancel() <= wait.cancelling  # nobody else cancelled it since
            if ours and isinstance(exc, asyncio.CancelledError):
                raise TimeoutError from exc
        raise
    table.remove(wait)
    if wait.expired:  # the awaitable swallowed the cancellation and answered: it stands
        task.uncancel()
    return result
