"""Cancellations a client lost, given back to the task that was cancelled.

CPython before 3.12 implements ``asyncio.wait_for`` with a task of its own: when the
caller is cancelled in the loop pass where that inner task finishes, ``wait_for`` returns
the inner result and the cancellation is gone (python/cpython#86296; 3.12 rebuilt
``wait_for`` on ``asyncio.timeout``). redis-py and valkey-py await every command they
write through it whenever ``socket_timeout`` is set (``send_packed_command`` in
``asyncio/connection.py``), which is every AIORedis client: a probe of two tasks looping
on INCRBY, cancelled after a random 0-5 ms, kept running in 22 of 200 rounds (Python
3.11.7, redis-py 8.1). A Sanic handler cancelled on a timeout or a disconnect, a lock's
renewer or a leader's job stopped by its owner then runs on, and whoever waits for it
waits for ever.

The task counts the cancellations asked of it (``Task.cancelling``, Python >= 3.11), and
a lost one stays counted: ``mark()`` before awaiting such a client, ``keep(mark)`` after
it returned raises the CancelledError the client swallowed. The command's effect stands
(it was sent), as for any cancellation that lands just after a reply. Python 3.10 does not
count cancellations: there, ``keep`` cannot tell and does nothing.

The library loses none itself either: a task that cancelled a helper of its own (a lock's
renewer, a leader's job) waits for it with ``wait_cancelled``, which returns the
cancellation the waiting task received meanwhile for it to raise once its cleanup is done.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["COUNTED", "keep", "mark", "wait_cancelled"]

#: Whether tasks count their cancellations (``cancelling``/``uncancel``: Python >= 3.11).
COUNTED = hasattr(asyncio.Task, "cancelling")

#: The current task and how many cancellations it had been asked for (or None).
Mark = tuple[Any, int]

_NOT_COUNTED: Mark = (None, 0)


def mark() -> Mark:
    """Where the current task's count of cancellations stands, before a client call."""
    task: Any = asyncio.current_task() if COUNTED else None
    return _NOT_COUNTED if task is None else (task, task.cancelling())


def keep(before: Mark) -> None:
    """Raise CancelledError if the task was cancelled since ``before`` and the client it
    awaited returned all the same."""
    task, count = before
    if task is not None and task.cancelling() > count:
        raise asyncio.CancelledError(
            "cancelled while a client call ran, which returned anyway (python/cpython#86296)"
        )


async def wait_cancelled(task: asyncio.Future[Any], timeout: float) -> BaseException | None:
    """Wait until ``task`` (cancelled by the caller) is done, at most ``timeout`` seconds,
    and on through a cancellation of the calling task: what the helper does on its way out
    ends before its owner goes on (a leader's job before its lease is given up). Returns the
    CancelledError the calling task received while waiting (None: none), which the caller
    must raise once its own cleanup is done: swallowing it let a leader task cancelled while
    its job ended run on for ever, leading again (a hang of the leader fault test, 1 run in
    10-40).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    received: BaseException | None = None
    while not task.done():
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            await asyncio.wait({task}, timeout=left)
        except asyncio.CancelledError as exc:
            received = exc
    return received
