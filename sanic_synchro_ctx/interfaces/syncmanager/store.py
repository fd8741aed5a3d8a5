"""The in-memory store behind InMemory and SyncManager.

Each public method is one atomic operation, run under the store's lock. InMemory calls it
in-process; SyncManager hosts one Store in the manager process, so that a worker's call is
one round trip and the operation runs next to the data. Values arrive already serialized
(bytes) and keys already prefixed: the store knows nothing of namespaces or JSON, except
that counters are ASCII decimal integers.
"""

from __future__ import annotations

import heapq
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

from ...checks import INT64_MAX, INT64_MIN
from ...errors import SynchroError, SynchroTypeError, SynchroValueError
from ...fencing import next_fence
from ...ratelimit import gcra
from .hub import Hub

__all__ = ["Store"]

# The exact form every serializer writes integers in (and Redis INCRBY accepts).
_INTEGER = re.compile(rb"-?(?:0|[1-9][0-9]*)")
_now = time.monotonic


def _canonical_count(data: bytes) -> bool:
    """Whether ``data`` is an integer as the serializers write it (what INCRBY accepts
    too); a non-negative one without the regular expression (most counters)."""
    if data.isdigit():
        return data[0] != 48 or len(data) == 1  # b"0", but no other leading zero
    return _INTEGER.fullmatch(data) is not None


#: Scans a Store keeps going at once (the oldest is forgotten past this).
MAX_SCANS = 256


class Store:
    """A dict of bytes with per-key expiry and leased locks; every method is atomic."""

    #: Methods a manager client may call.
    EXPOSED = (
        "get",
        "get_many",
        "set",
        "set_many",
        "add_many",
        "delete",
        "increment",
        "replace",
        "compare_and_set",
        "expire",
        "ttl",
        "keys",
        "scan",
        "clear",
        "lock_acquire",
        "lock_release",
        "lock_extend",
        "locked",
        "semaphore_acquire",
        "semaphore_release",
        "rate_limit",
        "publish",
        "batch",
    )

    def __init__(self, *, lease_grace: bool = False) -> None:
        """``lease_grace``: this store replaces one that died, whose leases may still be in
        use (their holders do not know yet): a lease on any name is granted only once as
        long as it asks for has passed since this store started (every holder of a name
        asks for the same ttl, as a leader task's or one call site's do; a lease of the old
        store then ended), as Chubby's master fail-over does."""
        self._granting = _now() if lease_grace else None
        self._data: dict[str, bytes] = {}
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._locks: dict[str, tuple[str, float]] = {}
        # the last fencing token given, to any name: tokens grow across every name, so
        # that nothing is kept per name (fencing.py)
        self._fence = 0
        self._semaphores: dict[str, dict[str, float]] = {}  # name -> {holder: deadline}
        # (deadline, is a semaphore, name) of every lease given: the leases that ended
        # without a release are forgotten (a name taken once is not kept for ever)
        self._leases: list[tuple[float, bool, str]] = []
        # Rate limits: each key's TAT, and a heap holding one (deadline, key) per key (not
        # one per call): a popped key whose TAT moved on goes back with its new TAT.
        self._rates: dict[str, float] = {}
        self._rate_heap: list[tuple[float, str]] = []
        # scans under way: cursor -> (the keys the scan started with, how far it got)
        self._scans: dict[int, tuple[list[str], int]] = {}
        self._scan_ids = 0
        self._mutex = threading.Lock()
        #: The channels of this store's publish/subscribe.
        self.hub = Hub()

    # -- expiry bookkeeping (caller holds the mutex) ---------------------------------------

    def _purge(self, now: float) -> None:
        """Drop keys whose deadline passed; amortised over the operations that run."""
        heap = self._heap
        expiry = self._expiry
        while heap and heap[0][0] <= now:
            deadline, key = heapq.heappop(heap)
            if expiry.get(key) == deadline:
                del expiry[key]
                del self._data[key]

    def _set_expiry(self, key: str, ttl: float | None, now: float) -> None:
        if ttl is None:
            self._expiry.pop(key, None)
        else:
            deadline = now + ttl
            self._expiry[key] = deadline
            heapq.heappush(self._heap, (deadline, key))

    def _drop(self, key: str) -> bool:
        self._expiry.pop(key, None)
        return self._data.pop(key, None) is not None

    # -- operations -------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        with self._mutex:
            if self._heap:
                self._purge(_now())
            return self._data.get(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        with self._mutex:
            if self._heap:
                self._purge(_now())
            data = self._data
            return [data.get(key) for key in keys]

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        with self._mutex:
            now = _now()
            if self._heap:
                self._purge(now)
            self._data[key] = value
            if ttl is not None or self._expiry:
                self._set_expiry(key, ttl, now)

    def set_many(self, items: Sequence[tuple[str, bytes]], ttl: float | None) -> None:
        with self._mutex:
            now = _now()
            if self._heap:
                self._purge(now)
            for key, value in items:
                self._data[key] = value
                self._set_expiry(key, ttl, now)

    def add_many(self, items: Sequence[tuple[str, bytes]], ttl: float | None) -> list[bytes]:
        """Set each key that is missing; return the value each key now holds."""
        with self._mutex:
            now = _now()
            if self._heap:
                self._purge(now)
            data = self._data
            stored = []
            for key, value in items:
                current = data.get(key)
                if current is None:
                    data[key] = current = value
                    self._set_expiry(key, ttl, now)
                stored.append(current)
            return stored

    def delete(self, keys: Sequence[str]) -> int:
        with self._mutex:
            if self._heap:
                self._purge(_now())
            return sum(self._drop(key) for key in set(keys))

    def increment(self, key: str, by: int, ttl: float | None = None) -> int:
        """Add ``by`` to an integer value (missing counts as 0, and gets ``ttl``); an
        existing key keeps its expiry."""
        with self._mutex:
            now = _now()
            if self._heap:
                self._purge(now)
            current = self._data.get(key)
            if current is None:
                result = by
            else:
                if not _canonical_count(current):
                    raise SynchroTypeError("the stored value is not an integer")
                result = int(current) + by
            if not INT64_MIN <= result <= INT64_MAX:
                raise SynchroValueError("the result leaves the signed 64-bit range")
            self._data[key] = str(result).encode("ascii")
            if current is None and (ttl is not None or self._expiry):
                self._set_expiry(key, ttl, now)
            return result

    def replace(self, key: str, value: bytes) -> bytes | None:
        """Set ``key`` and return the previous value; keeps the key's expiry."""
        with self._mutex:
            if self._heap:
                self._purge(_now())
            old = self._data.get(key)
            self._data[key] = value
            return old

    def compare_and_set(self, key: str, expected: bytes, new: bytes, ttl: float | None) -> bool:
        with self._mutex:
            now = _now()
            if self._heap:
                self._purge(now)
            if self._data.get(key) != expected:
                return False
            self._data[key] = new
            self._set_expiry(key, ttl, now)
            return True

    def expire(self, key: str, ttl: float | None) -> bool:
        with self._mutex:
            now = _now()
            if self._heap:
                self._purge(now)
            if key not in self._data:
                return False
            self._set_expiry(key, ttl, now)
            return True

    def ttl(self, key: str) -> float | None:
        with self._mutex:
            now = _now()
            if self._heap:
                self._purge(now)
            deadline = self._expiry.get(key)
            return None if deadline is None else max(deadline - now, 0.0)

    def keys(self, prefix: str) -> list[str]:
        with self._mutex:
            if self._heap:
                self._purge(_now())
            return [key for key in self._data if key.startswith(prefix)]

    def scan(self, prefix: str, cursor: int | None, count: int) -> tuple[int | None, list[str]]:
        """A page of the keys starting with ``prefix``: from a snapshot taken when the scan
        starts (kept here, not in the caller), each key handed out only if it still
        exists. The most recent :data:`MAX_SCANS` scans are kept."""
        with self._mutex:
            if self._heap:
                self._purge(_now())
            data = self._data
            if cursor is None:
                keys, position = [key for key in data if key.startswith(prefix)], 0
            else:
                scan = self._scans.pop(cursor, None)
                if scan is None:
                    raise SynchroError(
                        "this scan is no longer known to the store (only the most recent "
                        f"{MAX_SCANS} are kept, and a restarted manager knows none): start "
                        "it again"
                    )
                keys, position = scan
            page: list[str] = []
            while position < len(keys) and len(page) < count:
                key = keys[position]
                position += 1
                if key in data:
                    page.append(key)
            if position >= len(keys):
                return None, page
            self._scan_ids += 1
            self._scans[self._scan_ids] = (keys, position)
            while len(self._scans) > MAX_SCANS:
                del self._scans[next(iter(self._scans))]
            return self._scan_ids, page

    def clear(self, prefix: str) -> None:
        with self._mutex:
            for key in [key for key in self._data if key.startswith(prefix)]:
                self._drop(key)

    def lock_acquire(self, name: str, token: str, ttl: float) -> tuple[str | None, int]:
        """Take the lock for ``ttl`` seconds if it is free or its lease ended: (None, the
        fencing token) on success, else (the holder's token, 0)."""
        with self._mutex:
            now = _now()
            if self._granting is not None and now < self._granting + ttl:
                return "", 0  # a lease of the store that died may still run: wait
            held = self._locks.get(name)
            if held is not None and held[1] > now and held[0] != token:
                return held[0], 0
            self._forget_ended_leases(now)
            fence = self._fence = next_fence(time.time(), self._fence)
            self._locks[name] = (token, now + ttl)
            heapq.heappush(self._leases, (now + ttl, False, name))
            return None, fence

    def _forget_ended_leases(self, now: float) -> None:
        """Drop the locks and semaphore holders whose lease ended (under the mutex)."""
        leases = self._leases
        while leases and leases[0][0] <= now:
            _, semaphore, name = heapq.heappop(leases)
            if semaphore:
                holders = self._semaphores.get(name)
                if holders is not None:
                    for gone in [holder for holder, end in holders.items() if end <= now]:
                        del holders[gone]
                    if not holders:
                        del self._semaphores[name]
            else:
                held = self._locks.get(name)
                if held is not None and held[1] <= now:
                    del self._locks[name]

    def lock_release(self, name: str, token: str) -> bool:
        """Release the lock if ``token`` holds a live lease; False otherwise (not the owner)."""
        with self._mutex:
            held = self._locks.get(name)
            if held is None or held[0] != token or held[1] <= _now():
                return False
            del self._locks[name]
            return True

    def lock_extend(self, name: str, token: str, ttl: float) -> bool:
        """Make ``token``'s live lease end ``ttl`` seconds from now; False if not its own."""
        with self._mutex:
            now = _now()
            held = self._locks.get(name)
            if held is None or held[0] != token or held[1] <= now:
                return False
            self._locks[name] = (token, now + ttl)
            heapq.heappush(self._leases, (now + ttl, False, name))
            return True

    def locked(self, name: str) -> bool:
        with self._mutex:
            held = self._locks.get(name)
            return held is not None and held[1] > _now()

    def semaphore_acquire(self, name: str, token: str, limit: int, ttl: float) -> bool:
        """Hold one of the ``limit`` places of semaphore ``name`` for ``ttl`` seconds (a
        holder whose lease ended has left)."""
        with self._mutex:
            now = _now()
            if self._granting is not None and now < self._granting + ttl:
                return False  # as lock_acquire
            self._forget_ended_leases(now)  # this name's ended holders included
            holders = self._semaphores.setdefault(name, {})
            if token not in holders and len(holders) >= limit:
                return False
            holders[token] = now + ttl
            heapq.heappush(self._leases, (now + ttl, True, name))
            return True

    def semaphore_release(self, name: str, token: str) -> bool:
        with self._mutex:
            holders = self._semaphores.get(name, {})
            deadline = holders.pop(token, None)
            if not holders:
                self._semaphores.pop(name, None)
            return deadline is not None and deadline > _now()

    def rate_limit(
        self, key: str, limit: int, per: float, cost: int
    ) -> tuple[bool, int, float, float]:
        """One GCRA step on the TAT of ``key`` (see :mod:`...ratelimit`)."""
        with self._mutex:
            now = _now()
            rates, heap = self._rates, self._rate_heap
            while heap and heap[0][0] <= now:
                _, gone = heapq.heappop(heap)
                later = rates[gone]
                if later <= now:
                    del rates[gone]
                else:
                    heapq.heappush(heap, (later, gone))
            tat = rates.get(key)
            new_tat, answer = gcra(tat, now, limit, per, cost)
            if new_tat is not None:
                if tat is None:
                    heapq.heappush(heap, (new_tat, key))
                rates[key] = new_tat
            # a plain tuple: the wire carries it without naming a class
            return answer.allowed, answer.remaining, answer.retry_after, answer.reset_after

    def publish(self, channel: str, data: bytes) -> int:
        """Hand ``data`` to the subscribers of ``channel``; how many received it."""
        return self.hub.publish(channel, data)

    def batch(self, calls: Sequence[tuple[str, tuple[Any, ...]]]) -> list[tuple[bool, Any]]:
        """Run several operations in order; each gets its own result or its own exception."""
        results: list[tuple[bool, Any]] = []
        append = results.append
        for method, args in calls:
            if method not in _BATCHABLE:
                append((False, SynchroValueError(f"unknown store operation {method!r}")))
                continue
            try:
                append((True, getattr(self, method)(*args)))
            except Exception as exc:
                append((False, exc))
        return results


#: What a batch may call: every exposed method but batch itself.
_BATCHABLE = frozenset(Store.EXPOSED) - {"batch"}
