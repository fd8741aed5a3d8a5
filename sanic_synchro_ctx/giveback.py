"""What a failed attempt to take a lock or a semaphore place may have taken, given back.

An attempt that timed out or was cancelled after its request left may still take the lock
when the backend gets to it: a backend frozen past the timeout processes the queued request
when it resumes, maybe after a release sent at once on another connection (measured: 4 to 5
of 20 runs over the embedded manager and memcached). The lock would then be held by nobody
for its whole lease. So the attempt's owner token, which no one else ever holds, is released
again by this process's give-back thread until a release succeeds, or until ``ttl`` seconds
passed since the backend last failed to answer (a lease taken later than that would have
been answered), and never longer than ten leases. Each release is an ordinary, bounded
operation; releasing an owner that holds nothing changes nothing, so repeating it is safe.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .interfaces.base import BaseSynchroInterface

__all__ = ["give_back", "undo"]

#: Seconds between two releases of one owner: doubling from the first to the last.
FIRST_DELAY = 0.05
MAX_DELAY = 1.0

Release = Callable[[], Coroutine[Any, Any, bool]]


@dataclass(order=True)
class _Job:
    due: float
    order: int
    interface: BaseSynchroInterface = field(compare=False)
    release: Release = field(compare=False)
    ttl: float = field(compare=False)
    until: float = field(compare=False)
    last_resort: float = field(compare=False)
    delay: float = field(compare=False, default=FIRST_DELAY)


class _GiveBack:
    """One daemon thread for the process; its blocking calls reuse one bridge loop."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._due: list[_Job] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, interface: BaseSynchroInterface, release: Release, ttl: float) -> None:
        now = time.monotonic()
        job = _Job(now, next(self._order), interface, release, ttl, now + ttl, now + 10 * ttl)
        with self._changed:
            heapq.heappush(self._due, job)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="synchro-give-back", daemon=True
                )
                self._thread.start()
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._due or self._due[0].due > time.monotonic():
                    self._changed.wait(self._due[0].due - time.monotonic() if self._due else None)
                job = heapq.heappop(self._due)
            if self._again(job):
                with self._changed:
                    heapq.heappush(self._due, job)
            elif all(other.interface is not job.interface for other in self._due):
                with contextlib.suppress(Exception):  # what this thread opened for it
                    job.interface.close_thread()

    def _again(self, job: _Job) -> bool:
        """Release once; whether to try again (and when: ``job.due``)."""
        try:
            if job.interface.run_blocking(job.release()):
                return False
        except Exception:  # no answer: a lease taken later is still to come
            job.until = time.monotonic() + job.ttl
        now = time.monotonic()
        job.due = now + job.delay
        job.delay = min(job.delay * 2, MAX_DELAY)
        job.order = next(self._order)
        return job.due < min(job.until, job.last_resort)


_threads: list[_GiveBack] = []
os.register_at_fork(after_in_child=_threads.clear)


def give_back(interface: BaseSynchroInterface, release: Release, ttl: float) -> None:
    """Call ``release()`` on this process's give-back thread until it answers True or
    ``ttl`` seconds passed since the backend last failed to answer."""
    if not _threads:
        _threads.append(_GiveBack())
    _threads[0].add(interface, release, ttl)


async def undo(interface: BaseSynchroInterface, release: Release, ttl: float) -> None:
    """After an attempt that failed or was cancelled: ``release()`` now, and if that did
    not release anything (the attempt may not have been applied yet), again in the
    background (:func:`give_back`). Never raises: the attempt's own error goes on."""
    released = False
    with contextlib.suppress(Exception):
        released = await release()
    if not released:
        give_back(interface, release, ttl)
