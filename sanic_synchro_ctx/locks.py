"""Shared locks: a lease (``ttl``) plus an owner token, for ``async with`` and ``with``.

Acquiring stores a fresh random token under the lock's key for ``ttl`` seconds; releasing
succeeds only for the token that holds a live lease, so a holder whose lease expired (and
whose lock someone else may now hold) gets LockNotOwned instead of releasing another
owner's lock. Waiting is a poll with capped, jittered exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import time
from types import TracebackType
from typing import TYPE_CHECKING

from .checks import check_key, check_lease, check_timeout
from .errors import LockNotOwned, LockTimeout, SynchroError

if TYPE_CHECKING:
    from .interfaces.base import BaseSynchroInterface

__all__ = ["AsyncLock", "BlockingLock"]

_FIRST_DELAY = 0.002
_MAX_DELAY = 0.1

# Tokens of the locks this process holds -> the event loop they were taken on (None when
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


def _new_token() -> str:
    return f"{os.getpid()}:{secrets.token_hex(12)}"


class _Wait:
    """Backoff schedule and deadline of one acquire."""

    def __init__(self, name: str, timeout: float | None) -> None:
        self._name = name
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
            raise LockTimeout(f"lock {self._name!r} not acquired within {self._timeout} s")
        return min(delay, left)


class _LockBase:
    def __init__(
        self,
        interface: BaseSynchroInterface,
        name: str,
        *,
        ttl: float = 30.0,
        timeout: float | None = None,
    ) -> None:
        self._interface = interface
        self._name = check_key(name, "lock name")
        self._ttl = check_lease(ttl)
        self._timeout = check_timeout(timeout)
        self._token: str | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def held(self) -> bool:
        """True while this lock object holds the lock (as far as it knows: leases expire)."""
        return self._token is not None

    def _start(self) -> tuple[str, _Wait]:
        if self._token is not None:
            raise SynchroError(
                f"lock {self._name!r} is already held by this object (not re-entrant)"
            )
        return _new_token(), _Wait(self._name, self._timeout)

    def _acquired(self, token: str) -> None:
        self._token = token
        _held[token] = _running_loop()

    def _forget(self) -> str:
        token = self._token
        if token is None:
            raise LockNotOwned(f"lock {self._name!r} is not held by this object")
        self._token = None
        _held.pop(token, None)
        return token

    def _not_owned(self) -> LockNotOwned:
        return LockNotOwned(
            f"lock {self._name!r} was not released: its lease expired (ttl={self._ttl} s) "
            "and it is no longer ours"
        )

    def __repr__(self) -> str:
        state = "held" if self._token else "free"
        return f"<{type(self).__name__} {self._name!r} ttl={self._ttl} {state}>"


class AsyncLock(_LockBase):
    """A shared lock for ``async with synchro.lock("name"):``."""

    async def acquire(self) -> None:
        """Wait until the lock is ours; LockTimeout once ``timeout`` seconds passed."""
        token, wait = self._start()
        interface = self._interface
        while True:
            try:
                holder = await interface.acquire_lock(self._name, token, self._ttl)
            except BaseException:
                # Cancelled or failed after the request left: the lock may be ours.
                with contextlib.suppress(Exception):
                    await interface.release_lock(self._name, token)
                raise
            if holder is None:
                self._acquired(token)
                return
            await asyncio.sleep(wait.next_delay())

    async def release(self) -> None:
        """Release the lock; LockNotOwned if its lease expired and it is not ours any more."""
        token = self._forget()
        if not await self._interface.release_lock(self._name, token):
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
    loop fails at once with LockTimeout, since its holder cannot run to release it.
    """

    def acquire(self) -> None:
        """Block until the lock is ours; LockTimeout once ``timeout`` seconds passed."""
        token, wait = self._start()
        run = self._interface.run_blocking
        loop = _running_loop()
        while True:
            holder = run(self._interface.acquire_lock(self._name, token, self._ttl))
            if holder is None:
                self._acquired(token)
                return
            if loop is not None and holder in _held and _held[holder] is loop:
                raise LockTimeout(
                    f"lock {self._name!r} is held by a task or handler of the event loop this "
                    "blocking call runs on: it cannot release while the loop waits here"
                )
            time.sleep(wait.next_delay())

    def release(self) -> None:
        """Release the lock; LockNotOwned if its lease expired and it is not ours any more."""
        token = self._forget()
        if not self._interface.run_blocking(self._interface.release_lock(self._name, token)):
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
