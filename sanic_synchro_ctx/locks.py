"""Shared locks and semaphores: leases with owner tokens, for ``async with`` and ``with``.

Acquiring stores a fresh random owner under the lock's key for ``ttl`` seconds; releasing
succeeds only for the owner of a live lease, so a holder whose lease expired (and whose
lock someone else may now hold) gets LockNotOwned instead of releasing another owner's
lock. Each acquisition gets a *fencing token* (``lock.token``): an int that grows with every
acquisition of that name across all processes, to hand to a storage that refuses writes
carrying an older token than it has seen. ``extend()`` renews the lease (owner only);
``auto_renew=True`` does so every ``ttl / 3`` while the lock is held, and if the lease is
lost anyway (the backend unreachable for longer than the lease, or taken over), ``lost``
turns true and leaving the block raises LockNotOwned. Waiting is a poll with capped,
jittered exponential backoff.

A semaphore admits at most ``limit`` holders at a time across all processes, each with a
lease of its own (a crashed holder's place frees when its lease ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
import random
import secrets
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .cancellation import wait_cancelled
from .checks import check_key, check_lease, check_timeout
from .errors import (
    LockNotOwned,
    LockTimeout,
    SynchroConnectionError,
    SynchroError,
    SynchroTypeError,
    SynchroValueError,
)
from .giveback import undo

if TYPE_CHECKING:
    from .interfaces.base import BaseSynchroInterface

__all__ = ["AsyncLock", "AsyncSemaphore", "BlockingLock", "BlockingSemaphore"]

_FIRST_DELAY = 0.002
_MAX_DELAY = 0.1

# Owners of the locks this process holds -> the event loop they were taken on (None when
# taken outside any loop). A blocking acquire on a loop's thread that finds its lock held
# from that same loop would wait on a holder that cannot resume while the loop is blocked:
# it fails at once instead of hanging.
_held: dict[str, asyncio.AbstractEventLoop | None] = {}
os.register_at_fork(after_in_child=_held.clear)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


#: Longest wait in release() for the cancelled renewal task to end.
RENEWER_STOP_WAIT = 1.0


def _new_owner() -> str:
    return f"{os.getpid()}:{secrets.token_hex(12)}"


class _Wait:
    """Backoff schedule and deadline of one acquire."""

    def __init__(self, what: str, timeout: float | None) -> None:
        self._what = what
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._delay = _FIRST_DELAY

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; LockTimeout once the deadline passed."""
        delay = self._delay * random.uniform(0.5, 1.0)
        self._delay = min(self._delay * 2, _MAX_DELAY)
        if self._deadline is None:
            return delay
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise LockTimeout(f"{self._what} not acquired within {self._timeout} s")
        return min(delay, left)


class _LockBase:
    def __init__(
        self,
        interface: BaseSynchroInterface,
        name: str,
        *,
        ttl: float = 30.0,
        timeout: float | None = None,
        auto_renew: bool = False,
    ) -> None:
        if not isinstance(auto_renew, bool):
            raise SynchroTypeError("auto_renew must be True or False")
        self._interface = interface
        self._name = check_key(name, "lock name")
        self._ttl = check_lease(ttl)
        self._timeout = check_timeout(timeout)
        self._auto_renew = auto_renew
        self._owner: str | None = None
        self._fence = 0
        self._lost = False
        self._lease_end = 0.0  # monotonic time the lease was last known to end

    @property
    def name(self) -> str:
        return self._name

    @property
    def held(self) -> bool:
        """True while this lock object holds the lock (as far as it knows: leases expire)."""
        return self._owner is not None and not self._lost

    @property
    def token(self) -> int:
        """The fencing token of this acquisition: grows with every acquisition of the name
        in every process (0 before the first)."""
        return self._fence

    @property
    def lost(self) -> bool:
        """True once the lease was lost while held (renewal refused, or impossible for
        longer than the lease): leaving the block then raises LockNotOwned."""
        return self._lost

    def _start(self) -> tuple[str, _Wait]:
        if self._owner is not None:
            raise SynchroError(
                f"lock {self._name!r} is already held by this object (not re-entrant)"
            )
        self._lost = False
        return _new_owner(), _Wait(f"lock {self._name!r}", self._timeout)

    async def _attempt(self, owner: str) -> tuple[str | None, int]:
        """One attempt to take the lock, for both front ends (the blocking one runs it on
        its private loop): (None, fencing token) if taken, else (holder, 0). An attempt
        that failed or was cancelled after its request left may have taken the lock, or
        may take it once the backend gets to it: it is released now, and again in the
        background until that is sure (giveback), else it would be held by nobody for its
        whole ttl (the blocking front end's own copy of this step once forgot that)."""
        interface, name = self._interface, self._name
        try:
            return await interface.acquire_lock(name, owner, self._ttl)
        except BaseException:
            await undo(interface, lambda: interface.release_lock(name, owner), self._ttl)
            raise

    def _acquired(self, owner: str, fence: int) -> None:
        self._owner, self._fence = owner, fence
        self._lease_end = time.monotonic() + self._ttl
        _held[owner] = _running_loop()

    def _forget(self) -> str:
        owner = self._owner
        if owner is None:
            raise LockNotOwned(f"lock {self._name!r} is not held by this object")
        self._owner = None
        _held.pop(owner, None)
        return owner

    def _lease(self, ttl: float | None) -> float:
        return self._ttl if ttl is None else check_lease(ttl)

    def _not_owned(self) -> LockNotOwned:
        return LockNotOwned(
            f"lock {self._name!r} is no longer ours: its lease ended (ttl={self._ttl} s) "
            "and another holder may have taken it"
        )

    def _renewed(self, ttl: float) -> None:
        self._lease_end = time.monotonic() + ttl

    def _renewal_failed(self, error: BaseException | None) -> bool:
        """After a failed renewal: True once the lease is lost (refused, or not renewed in
        time), else keep trying."""
        if error is None or time.monotonic() >= self._lease_end:
            self._lost = True
        return self._lost

    def __repr__(self) -> str:
        state = "lost" if self._lost else "held" if self._owner else "free"
        return f"<{type(self).__name__} {self._name!r} ttl={self._ttl} {state}>"


class AsyncLock(_LockBase):
    """A shared lock for ``async with synchro.lock("name"):``."""

    _renewer: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        """Wait until the lock is ours; LockTimeout once ``timeout`` seconds passed."""
        owner, wait = self._start()
        while True:
            holder, fence = await self._attempt(owner)
            if holder is None:
                self._acquired(owner, fence)
                if self._auto_renew:
                    self._renewer = asyncio.get_running_loop().create_task(self._renew())
                return
            await asyncio.sleep(wait.next_delay())

    async def extend(self, ttl: float | None = None) -> None:
        """Make the lease end ``ttl`` seconds from now (None: the lock's own ttl); owner
        only: LockNotOwned if it is not (any more) ours."""
        lease = self._lease(ttl)
        owner = self._owner
        if owner is None or self._lost:
            raise self._not_owned()
        if not await self._interface.extend_lock(self._name, owner, lease):
            self._lost = True
            raise self._not_owned()
        self._renewed(lease)

    async def _renew(self) -> None:
        """Every ttl/3: extend the lease; stop once it is lost."""
        owner = self._owner
        while owner is not None and owner == self._owner:
            await asyncio.sleep(self._ttl / 3)
            if owner != self._owner:
                return
            try:
                if await self._interface.extend_lock(self._name, owner, self._ttl):
                    self._renewed(self._ttl)
                    continue
                error: BaseException | None = None
            except SynchroConnectionError as exc:
                error = exc
            if self._renewal_failed(error):
                return

    async def release(self) -> None:
        """Release the lock; LockNotOwned if its lease was lost and it is not ours any more."""
        renewer, self._renewer = self._renewer, None
        cancelled = None
        if renewer is not None:
            renewer.cancel()
            # Bounded: a renewer whose cancellation a client lost (see ``cancellation``:
            # AIORedis gives it back; a client we do not know may not) would keep an
            # unbounded wait here going for ever. Past the bound it ends by itself: it
            # stops as soon as the lock is no longer this object's (below).
            cancelled = await wait_cancelled(renewer, RENEWER_STOP_WAIT)
        lost = self._lost
        owner = self._forget()
        try:
            released = await self._interface.release_lock(self._name, owner)
        finally:
            if cancelled is not None:  # cancelled while the renewer ended: released, then raised
                raise cancelled
        if not released or lost:
            raise self._not_owned()

    async def __aenter__(self) -> AsyncLock:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()


class BlockingLock(_LockBase):
    """A shared lock for ``with synchro.sync.lock("name"):``.

    Called on a thread that runs an event loop (a plain ``def`` Sanic handler), every
    attempt holds the whole worker; a wait on a lock held by a task or handler of that same
    loop fails at once with LockTimeout, since its holder cannot run to release it. With
    ``auto_renew``, the process's renewal thread (:class:`_Renewals`) renews the lease.
    """

    def acquire(self) -> None:
        """Block until the lock is ours; LockTimeout once ``timeout`` seconds passed."""
        owner, wait = self._start()
        run = self._interface.run_blocking
        loop = _running_loop()
        while True:
            holder, fence = run(self._attempt(owner))
            if holder is None:
                self._acquired(owner, fence)
                if self._auto_renew:
                    _renewals().add(self, owner)
                return
            if loop is not None and holder in _held and _held[holder] is loop:
                raise LockTimeout(
                    f"lock {self._name!r} is held by a task or handler of the event loop this "
                    "blocking call runs on: it cannot release while the loop waits here"
                )
            time.sleep(wait.next_delay())

    def extend(self, ttl: float | None = None) -> None:
        """Make the lease end ``ttl`` seconds from now (None: the lock's own ttl); owner
        only: LockNotOwned if it is not (any more) ours."""
        lease = self._lease(ttl)
        owner = self._owner
        if owner is None or self._lost:
            raise self._not_owned()
        run = self._interface.run_blocking
        if not run(self._interface.extend_lock(self._name, owner, lease)):
            self._lost = True
            raise self._not_owned()
        self._renewed(lease)

    def _renew_once(self, owner: str) -> bool:
        """One renewal (on the renewal thread); whether to keep renewing."""
        if owner != self._owner:
            return False
        try:
            if self._interface.run_blocking(
                self._interface.extend_lock(self._name, owner, self._ttl)
            ):
                self._renewed(self._ttl)
                return True
            error: BaseException | None = None
        except SynchroConnectionError as exc:
            error = exc
        return not self._renewal_failed(error)

    def release(self) -> None:
        """Release the lock; LockNotOwned if its lease was lost and it is not ours any more."""
        if self._auto_renew:
            _renewals().forget(self)
        lost = self._lost
        owner = self._forget()
        if not self._interface.run_blocking(self._interface.release_lock(self._name, owner)):
            raise self._not_owned()
        if lost:
            raise self._not_owned()

    def __enter__(self) -> BlockingLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class _Renewals:
    """The thread that renews the leases of a process's blocking ``auto_renew`` locks.

    One thread for all of them, living as long as the process: its blocking calls reuse
    one bridge loop and its clients (a thread per lock would open a client per lock, and
    opening a Redis Cluster client takes longer than a short lease). Renewals run one at a
    time, each bounded by the interface's timeout.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._due: list[tuple[float, int, BlockingLock, str]] = []
        self._order = itertools.count()
        self._renewing: BlockingLock | None = None
        self._thread: threading.Thread | None = None
        #: Interfaces whose last renewed lock was released: this thread closes what its
        #: calls opened for them (a client the releasing code cannot reach).
        self._idle: list[BaseSynchroInterface] = []

    def add(self, lock: BlockingLock, owner: str) -> None:
        with self._changed:
            due = time.monotonic() + lock._ttl / 3
            heapq.heappush(self._due, (due, next(self._order), lock, owner))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="synchro-lease-renewals", daemon=True
                )
                self._thread.start()
            self._changed.notify()

    def forget(self, lock: BlockingLock) -> None:
        """Stop renewing ``lock`` (its entries are skipped); wait out a renewal under way."""
        with self._changed:
            self._due = [entry for entry in self._due if entry[2] is not lock]
            heapq.heapify(self._due)
            while self._renewing is lock:
                self._changed.wait()
            interface = lock._interface
            if all(entry[2]._interface is not interface for entry in self._due):
                self._idle.append(interface)
                self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._idle and (not self._due or self._due[0][0] > time.monotonic()):
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    self._changed.wait(wait)
                busy = {id(entry[2]._interface) for entry in self._due}
                idle = [one for one in self._idle if id(one) not in busy]
                self._idle = []
                lock = owner = None
                if not idle:
                    _, _, lock, owner = heapq.heappop(self._due)
                    self._renewing = lock
            for interface in idle:  # outside the condition: closing may take a round trip
                with contextlib.suppress(Exception):
                    interface.close_thread()
            if lock is None or owner is None:
                continue
            try:
                keep = lock._renew_once(owner)
            except Exception as exc:  # never ends the thread: retried until the lease ends
                keep = not lock._renewal_failed(exc)
            with self._changed:
                self._renewing = None
                self._changed.notify_all()
                if keep and lock._owner == owner:
                    due = time.monotonic() + lock._ttl / 3
                    heapq.heappush(self._due, (due, next(self._order), lock, owner))


_renewals_of: list[_Renewals] = []


def _renewals() -> _Renewals:
    """This process's renewal thread (a forked child starts its own)."""
    if not _renewals_of:
        _renewals_of.append(_Renewals())
    return _renewals_of[0]


os.register_at_fork(after_in_child=_renewals_of.clear)


class _SemaphoreBase:
    def __init__(
        self,
        interface: BaseSynchroInterface,
        name: str,
        limit: int,
        *,
        ttl: float = 30.0,
        timeout: float | None = None,
    ) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise SynchroTypeError(f"limit must be an int, got {type(limit).__name__}")
        if limit < 1:
            raise SynchroValueError(f"limit must be at least 1, got {limit}")
        self._interface = interface
        self._name = check_key(name, "semaphore name")
        self._limit = limit
        self._ttl = check_lease(ttl)
        self._timeout = check_timeout(timeout)
        self._owner: str | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def held(self) -> bool:
        return self._owner is not None

    async def _attempt(self, owner: str) -> bool:
        """One attempt to take a place, for both front ends; a failed or cancelled one
        gives back the place it may have taken (see the lock's)."""
        interface, name = self._interface, self._name
        try:
            return await interface.acquire_semaphore(name, owner, self._limit, self._ttl)
        except BaseException:
            await undo(interface, lambda: interface.release_semaphore(name, owner), self._ttl)
            raise

    def _start(self) -> tuple[str, _Wait]:
        if self._owner is not None:
            raise SynchroError(f"semaphore {self._name!r} is already held by this object")
        return _new_owner(), _Wait(f"semaphore {self._name!r}", self._timeout)

    def _forget(self) -> str:
        owner = self._owner
        if owner is None:
            raise LockNotOwned(f"semaphore {self._name!r} is not held by this object")
        self._owner = None
        return owner

    def _not_owned(self) -> LockNotOwned:
        return LockNotOwned(
            f"semaphore {self._name!r}: the lease ended (ttl={self._ttl} s) before release"
        )

    def __repr__(self) -> str:
        state = "held" if self._owner else "free"
        return f"<{type(self).__name__} {self._name!r} limit={self._limit} {state}>"


class AsyncSemaphore(_SemaphoreBase):
    """At most ``limit`` holders across all processes: ``async with synchro.semaphore(...)``."""

    async def acquire(self) -> None:
        owner, wait = self._start()
        while True:
            if await self._attempt(owner):
                self._owner = owner
                return
            await asyncio.sleep(wait.next_delay())

    async def release(self) -> None:
        owner = self._forget()
        if not await self._interface.release_semaphore(self._name, owner):
            raise self._not_owned()

    async def __aenter__(self) -> AsyncSemaphore:
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.release()


class BlockingSemaphore(_SemaphoreBase):
    """At most ``limit`` holders across all processes: ``with synchro.sync.semaphore(...)``."""

    def acquire(self) -> None:
        owner, wait = self._start()
        run = self._interface.run_blocking
        while True:
            if run(self._attempt(owner)):
                self._owner = owner
                return
            time.sleep(wait.next_delay())

    def release(self) -> None:
        owner = self._forget()
        if not self._interface.run_blocking(self._interface.release_semaphore(self._name, owner)):
            raise self._not_owned()

    def __enter__(self) -> BlockingSemaphore:
        self.acquire()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()
