"""Running one async implementation for blocking callers.

Interfaces whose operations never suspend (InMemory, SyncManager) are driven to completion
right in the caller's thread: no event loop, no thread hop, no extra latency.

Network interfaces run their coroutine on the bridge: a private event loop of the calling
thread, with clients opened on that loop (a client is bound to the loop it was created on).
A blocking call made on a thread that runs an event loop (a plain ``def`` Sanic handler)
steps that loop aside while the private one runs, so the blocking path never touches, or
waits for, the caller's own loop: it is the thread that is blocked. Running in the caller's
thread avoids the two cross-thread wake-ups a separate loop thread costs per call (about
80 µs on a small VM, more than a Redis round trip). The private loops are forgotten in a
forked child and closed at exit, after the interfaces closed the clients they opened there.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
from asyncio import events
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from .errors import SynchroError

__all__ = ["Bridge", "bridge", "run_inline"]

T = TypeVar("T")


def run_inline(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends and return its result (or raise its exception).

    A coroutine that does suspend is a programming error in an ``inline`` interface: it is
    closed and RuntimeError is raised, rather than leaving work half done.
    """
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError("an inline interface operation suspended; it cannot run blocking")


async def _after_idle_events(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` once the loop handled what happened while it was not running.

    A private loop runs only during blocking calls, so a peer that closed a pooled
    connection in between (a server restart) goes unnoticed until the loop runs: handling
    pending I/O first lets clients see it and open a fresh connection instead of failing
    on the stale one. Only run when :func:`_events_pending` says something happened.
    """
    try:
        # two passes: a transport reads the end of file in one, and reports
        # connection_lost (scheduled then) in the next
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    except BaseException:
        coro.close()
        raise
    return await coro


def _events_pending(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether something happened while ``loop`` was not running: a callback left queued,
    or a file descriptor (a pooled connection the peer closed) ready to be read.

    One ``select`` with no wait costs about 1 µs; the two idle loop passes it spares a
    blocking call when nothing happened cost about 25 µs (measured on a 2-core VM). A loop
    without a selector (uvloop) cannot be asked: it always gets the passes.
    """
    selector = getattr(loop, "_selector", None)
    if selector is None or getattr(loop, "_ready", None):
        return True
    try:
        return bool(selector.select(0))
    except (OSError, ValueError):  # a closed selector: let the loop itself say what is wrong
        return True


async def _stop_after(coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> T:
    """Run ``coro``, then stop ``loop`` in that same pass: ``run_until_complete`` stops it
    from the task's done callback, one more pass of the loop later (about 13 µs on a
    2-core VM, for every blocking call)."""
    try:
        return await coro
    finally:
        loop.stop()


#: Longest wait, when a private loop closes, for the tasks still on it to end.
_TASKS_END_WAIT = 1.0


async def _close_clients(closers: list[Any]) -> None:
    """Run the closers of the clients opened on this private loop (best effort: the loop is
    going away), then end the tasks still on it as ``asyncio.run`` does, cancelled and
    waited for (bounded): a client's reader whose connection a closer just closed needs a
    pass or two more to see it, and a task still pending when its loop is closed is
    destroyed pending ("Task was destroyed but it is pending!": asyncio_redis's reader,
    once per full test run, from a blocking pipeline run in a thread)."""
    for closer in closers:
        with contextlib.suppress(Exception):
            await closer()
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=_TASKS_END_WAIT)


class Bridge:
    """A private event loop per calling thread, for blocking callers of network interfaces."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._local = threading.local()
        self._mutex = threading.Lock()
        # every private loop, with its thread and the closers of the clients opened on it
        self._loops: dict[asyncio.AbstractEventLoop, tuple[threading.Thread, list[Any]]] = {}

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """This thread's private loop, or None before its first blocking call."""
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        return loop

    def is_private(self, loop: asyncio.AbstractEventLoop) -> bool:
        return loop in self._loops

    def _private_loop(self) -> asyncio.AbstractEventLoop:
        loop = self.loop
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
            self._local.loop = loop
            with self._mutex:
                self._loops[loop] = (threading.current_thread(), [])
        return loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on this thread's private loop."""
        loop = self._private_loop()
        if loop.is_running():
            coro.close()
            raise SynchroError(
                "a blocking synchro call was made from code running on the blocking bridge "
                "itself: await the async front end there instead"
            )
        outer = events._get_running_loop()
        if outer is not None:
            events._set_running_loop(None)  # step the caller's loop aside while ours runs
        try:
            if _events_pending(loop):
                coro = _after_idle_events(coro)
            task = loop.create_task(_stop_after(coro, loop))
            while not task.done():
                loop.run_forever()
            return task.result()
        finally:
            if outer is not None:
                events._set_running_loop(outer)

    def on_close(
        self, loop: asyncio.AbstractEventLoop, closer: Callable[[], Awaitable[None]]
    ) -> None:
        """Run ``closer()`` on private ``loop`` before it closes (to close clients there)."""
        with self._mutex:
            entry = self._loops.get(loop)
            if entry is not None:
                entry[1].append(closer)

    def close(self) -> None:
        """Close this thread's private loop after running its closers (it reopens on use)."""
        loop = self.loop
        if loop is None:
            return
        with self._mutex:
            _, closers = self._loops.pop(loop, (None, []))
        self._local.loop = None
        if loop.is_running() or loop.is_closed():
            return

        try:
            self._run_aside(loop, _close_clients(closers))
        finally:
            loop.close()

    def _close_at_exit(self) -> None:
        # This thread's loop, and the loops of threads that ended (a loop runs on any
        # thread once its own stopped using it): their clients are closed first, so that
        # no client task is left pending; live threads keep theirs.
        self.close()
        with self._mutex:
            ended = [
                (loop, closers)
                for loop, (thread, closers) in self._loops.items()
                if not thread.is_alive()
            ]
            for loop, _ in ended:
                del self._loops[loop]
        for loop, closers in ended:
            if loop.is_running() or loop.is_closed():
                continue
            with contextlib.suppress(Exception):
                self._run_aside(loop, _close_clients(closers))
            with contextlib.suppress(Exception):
                loop.close()

    @staticmethod
    def _run_aside(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` on ``loop`` with this thread's own running loop (if any) aside."""
        outer = events._get_running_loop()
        if outer is not None:
            events._set_running_loop(None)
        try:
            loop.run_until_complete(coro)
        finally:
            if outer is not None:
                events._set_running_loop(outer)


#: The process-wide bridge shared by every network interface.
bridge = Bridge()
os.register_at_fork(after_in_child=bridge._reset)
atexit.register(bridge._close_at_exit)
