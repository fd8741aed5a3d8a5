"""A complete interface of your own: a dict in this process, behind one lock.

It implements every primitive of BaseSynchroInterface and passes the project's whole
contract suite (the tests run it as the interface "example-dict"). Everything common (key
checks, namespaces, JSON, TTL checks, error mapping, both front ends) comes from the base.
"""

import threading
import time
from collections.abc import Awaitable
from typing import Any

from sanic_synchro_ctx import BaseSynchroInterface, SynchroTypeError, SynchroValueError
from sanic_synchro_ctx.fencing import next_fence
from sanic_synchro_ctx.ratelimit import gcra

INT64 = range(-(2**63), 2**63)


async def done(value: Any) -> Any:
    """A primitive returns an awaitable; this one completes without suspending, so the
    blocking front end runs it inline (no event loop, no thread)."""
    return value


class DictInterface(BaseSynchroInterface):
    """One process only: every primitive is one step under one lock."""

    shares_between_processes = False  # Synchro warns when an app runs several workers

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._data: dict[str, tuple[bytes, float | None]] = {}  # value, deadline
        self._locks: dict[str, tuple[str, float]] = {}  # token, deadline
        self._fence = 0  # the last fencing token given (to any lock: nothing kept per name)
        self._semaphores: dict[str, dict[str, float]] = {}  # token -> deadline
        self._mutex = threading.Lock()

    def _live(self, key: str, now: float) -> tuple[bytes, float | None] | None:
        item = self._data.get(key)
        if item is not None and item[1] is not None and item[1] <= now:
            del self._data[key]
            return None
        return item

    @staticmethod
    def _deadline(ttl: float | None, now: float) -> float | None:
        return None if ttl is None else now + ttl

    def raw_get(self, key: str) -> Awaitable[bytes | None]:
        with self._mutex:
            item = self._live(key, time.monotonic())
            return done(None if item is None else item[0])

    def raw_get_many(self, keys: list[str]) -> Awaitable[list[bytes | None]]:
        with self._mutex:
            now = time.monotonic()
            return done([None if (i := self._live(k, now)) is None else i[0] for k in keys])

    def raw_set(self, key: str, value: bytes, ttl: float | None) -> Awaitable[None]:
        with self._mutex:
            self._data[key] = (value, self._deadline(ttl, time.monotonic()))
            return done(None)

    def raw_set_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> Awaitable[None]:
        with self._mutex:
            deadline = self._deadline(ttl, time.monotonic())
            for key, value in items:
                self._data[key] = (value, deadline)
            return done(None)

    def raw_add_many(
        self, items: list[tuple[str, bytes]], ttl: float | None
    ) -> Awaitable[list[bytes]]:
        with self._mutex:
            now = time.monotonic()
            stored = []
            for key, value in items:
                item = self._live(key, now)
                if item is None:
                    item = self._data[key] = (value, self._deadline(ttl, now))
                stored.append(item[0])
            return done(stored)

    def raw_delete(self, keys: list[str]) -> Awaitable[int]:
        with self._mutex:
            now = time.monotonic()
            live = [key for key in set(keys) if self._live(key, now) is not None]
            for key in live:
                del self._data[key]
            return done(len(live))

    def raw_increment(self, key: str, by: int, ttl: float | None) -> Awaitable[int]:
        with self._mutex:
            now = time.monotonic()
            item = self._live(key, now)
            current, deadline = (b"0", self._deadline(ttl, now)) if item is None else item
            try:
                number = int(current)
            except ValueError:
                raise SynchroTypeError("the stored value is not an integer") from None
            if current != str(number).encode():  # "1.0", " 1", "+1": not an integer
                raise SynchroTypeError("the stored value is not an integer")
            if number + by not in INT64:
                raise SynchroValueError("the result leaves the signed 64-bit range")
            self._data[key] = (str(number + by).encode(), deadline)
            return done(number + by)

    def raw_replace(self, key: str, value: bytes) -> Awaitable[bytes | None]:
        with self._mutex:
            item = self._live(key, time.monotonic())
            self._data[key] = (value, None if item is None else item[1])
            return done(None if item is None else item[0])

    def raw_compare_and_set(
        self, key: str, expected: bytes, new: bytes, ttl: float | None
    ) -> Awaitable[bool]:
        with self._mutex:
            now = time.monotonic()
            item = self._live(key, now)
            if item is None or item[0] != expected:
                return done(False)
            self._data[key] = (new, self._deadline(ttl, now))
            return done(True)

    def raw_expire(self, key: str, ttl: float | None) -> Awaitable[bool]:
        with self._mutex:
            now = time.monotonic()
            item = self._live(key, now)
            if item is None:
                return done(False)
            self._data[key] = (item[0], self._deadline(ttl, now))
            return done(True)

    def raw_ttl(self, key: str) -> Awaitable[float | None]:
        with self._mutex:
            now = time.monotonic()
            item = self._live(key, now)
            return done(None if item is None or item[1] is None else item[1] - now)

    def raw_keys(self, prefix: str) -> Awaitable[list[str]]:
        with self._mutex:
            now = time.monotonic()
            keys = [key for key in list(self._data) if key.startswith(prefix)]
            return done([key for key in keys if self._live(key, now) is not None])

    def raw_clear(self, prefix: str) -> Awaitable[None]:
        with self._mutex:
            for key in [key for key in self._data if key.startswith(prefix)]:
                del self._data[key]
            return done(None)

    def raw_lock_acquire(
        self, key: str, token: str, ttl: float
    ) -> Awaitable[tuple[str | None, int]]:
        with self._mutex:
            now = time.monotonic()
            holder = self._locks.get(key)
            if holder is not None and holder[1] > now:
                return done((holder[0], 0))
            self._locks[key] = (token, now + ttl)
            fence = self._fence = next_fence(time.time(), self._fence)
            return done((None, fence))

    def raw_lock_release(self, key: str, token: str) -> Awaitable[bool]:
        with self._mutex:
            holder = self._locks.get(key)
            if holder is None or holder[0] != token or holder[1] <= time.monotonic():
                return done(False)
            del self._locks[key]
            return done(True)

    def raw_lock_extend(self, key: str, token: str, ttl: float) -> Awaitable[bool]:
        with self._mutex:
            now = time.monotonic()
            holder = self._locks.get(key)
            if holder is None or holder[0] != token or holder[1] <= now:
                return done(False)
            self._locks[key] = (token, now + ttl)
            return done(True)

    def raw_locked(self, key: str) -> Awaitable[bool]:
        with self._mutex:
            holder = self._locks.get(key)
            return done(holder is not None and holder[1] > time.monotonic())

    def raw_semaphore_acquire(
        self, key: str, token: str, limit: int, ttl: float
    ) -> Awaitable[bool]:
        with self._mutex:
            now = time.monotonic()
            holders = self._semaphores.setdefault(key, {})
            for gone in [held for held, deadline in holders.items() if deadline <= now]:
                del holders[gone]
            if token not in holders and len(holders) >= limit:
                return done(False)
            holders[token] = now + ttl
            return done(True)

    def raw_semaphore_release(self, key: str, token: str) -> Awaitable[bool]:
        with self._mutex:
            deadline = self._semaphores.get(key, {}).pop(token, None)
            return done(deadline is not None and deadline > time.monotonic())

    def raw_rate_limit(
        self, key: str, limit: int, per: float, cost: int
    ) -> Awaitable[tuple[bool, int, float, float]]:
        with self._mutex:
            now = time.monotonic()
            item = self._live(key, now)
            tat = None if item is None else float(item[0])
            new_tat, answer = gcra(tat, now, limit, per, cost)
            if new_tat is not None:  # kept only while it matters
                self._data[key] = (repr(new_tat).encode(), new_tat)
            return done(answer)  # a RateLimit is the tuple asked for
