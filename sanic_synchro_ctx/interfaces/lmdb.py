"""LMDB: the context in a memory-mapped file shared by processes; no server, no manager.

LMDB (the ``lmdb`` package, a binding of the Lightning memory-mapped database) lets many
processes share one file with ACID transactions: every operation here is one transaction
(a read transaction, lock-free, or a write transaction, one writer at a time across all
processes, under LMDB's robust lock, which recovers from a writer that crashed). Both front
ends run it inline: no event loop, no thread, microseconds per operation.

``path=None``: the main process creates a private 0700 directory at start and hands its
path to the workers; it is removed when the app stops (data lives as long as the app). Where
no main process runs, the directory lives as long as the interface. With a ``path``, data
persists across restarts, and every process that opens the same path shares it (separately
started apps, ASGI servers' workers, scripts).

Records: a key is its full name in UTF-8; past LMDB's key limit (511 bytes), its first
256 bytes, ``\\xff#`` (a byte UTF-8 never has) and its SHA-256. A value record is a kind
byte, the deadline (Unix time, 0 for none: TTLs survive a restart) and, for a hashed key,
the key itself (so that ``keys()`` can answer), then the value. An expired record is
invisible at once and removed by the next write that meets it. ``durable=True`` fsyncs each
commit (survives an OS crash); the default survives the crash of any process, not of the
machine.

An environment is never used across ``fork``: a process opens its own (and clears the
reader slots that dead processes left). LMDB opens a path once per process: interfaces on
one path in one process share that environment. A full map raises SynchroError ("store full") with
the transaction aborted: nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from ..checks import INT64_MAX, INT64_MIN
from ..errors import SynchroError, SynchroTypeError, SynchroValueError, missing_client
from ..fencing import FENCE_MEMORY, next_fence
from ..ratelimit import gcra
from ..serializer import Serializer
from .base import DEFAULT_MAX_VALUE_SIZE, LOCK_MARK, BaseSynchroInterface

__all__ = ["LMDB"]

T = TypeVar("T")

#: Default map size: the most the file may grow to (it is sparse: only data takes room).
DEFAULT_MAP_SIZE = 1 << 30
_MAX_KEY = 511  # LMDB's default key limit, in bytes
_KEEP = 256  # a hashed key keeps this many bytes in plain: namespace scans still find it
_HASHED = b"\xff#"  # never in UTF-8: a hashed key cannot equal a plain one
_RECORD = struct.Struct("<Bd")  # kind, deadline
_PLAIN, _WITH_KEY = 0, 1
_LOCK = struct.Struct("<d")  # a lock: deadline, then the token
_LOCK_MARK = LOCK_MARK.encode("ascii")
#: Each lock's fencing counter: the lock's key with this mark instead of LOCK_MARK.
_FENCE_MARK = "\x00fence\x00"
#: Expired records are removed lazily: every this many writes, up to PURGE_BATCH records
#: are looked at (from where the last look stopped) and the expired ones deleted.
PURGE_EVERY = 256
PURGE_BATCH = 256


#: Per process, the open environment of each path, and how many interfaces use it.
_open_paths: dict[str, list[Any]] = {}
_open_lock = threading.Lock()


def _acquire_environment(module: Any, path: str, options: dict[str, Any]) -> Any:
    key = os.path.realpath(path)
    with _open_lock:
        entry = _open_paths.get(key)
        if entry is None or entry[1] != os.getpid():
            env = module.open(path, **options)
            env.reader_check()  # free the reader slots of processes that died
            entry = _open_paths[key] = [env, os.getpid(), 0]
        entry[2] += 1
        return entry[0]


def _release_environment(path: str) -> None:
    key = os.path.realpath(path)
    with _open_lock:
        entry = _open_paths.get(key)
        if entry is None or entry[1] != os.getpid():
            return
        entry[2] -= 1
        if entry[2] <= 0:
            del _open_paths[key]
            entry[0].close()


#: How many forks this process descends from (an environment opened before a fork is
#: never used after it: cheaper to compare than a getpid() per operation).
_forks = [0]


def _forked() -> None:
    _open_paths.clear()  # a child opens its own
    _forks[0] += 1


os.register_at_fork(after_in_child=_forked)


def _import_lmdb() -> Any:
    try:
        import lmdb
    except ImportError:
        raise missing_client("LMDB", "lmdb", "lmdb", "lmdb") from None
    return lmdb


async def _done(value: T) -> T:
    """A primitive's result, as an awaitable that completes without suspending (so the
    blocking front end runs it inline)."""
    return value


def _encode_key(key: str) -> tuple[bytes, bytes | None]:
    """The stored key, and the full key to keep in the record when it had to be hashed."""
    raw = key.encode("utf-8", "surrogatepass")
    if len(raw) <= _MAX_KEY:
        return raw, None
    return raw[:_KEEP] + _HASHED + hashlib.sha256(raw).digest(), raw


def _record(value: bytes, deadline: float, original: bytes | None) -> bytes:
    if original is None:
        return _RECORD.pack(_PLAIN, deadline) + value
    return _RECORD.pack(_WITH_KEY, deadline) + struct.pack("<I", len(original)) + original + value


def _parse(record: bytes) -> tuple[float, bytes, bytes | None]:
    """(deadline, value, original key or None) of a stored record."""
    kind, deadline = _RECORD.unpack_from(record)
    if kind == _PLAIN:
        return deadline, record[_RECORD.size :], None
    (length,) = struct.unpack_from("<I", record, _RECORD.size)
    start = _RECORD.size + 4
    return deadline, record[start + length :], record[start : start + length]


def _alive(deadline: float, now: float) -> bool:
    return deadline == 0.0 or deadline > now


class _WriteTransaction:
    """``with interface._write() as txn``: LMDB's write transaction, committed when the
    block ends and aborted on any error; a full map is reported as SynchroError. Every
    PURGE_EVERY-th write of an interface also removes some expired records."""

    __slots__ = ("_interface", "_txn")

    def __init__(self, interface: LMDB) -> None:
        self._interface = interface

    def __enter__(self) -> Any:
        self._txn = self._interface._environment().begin(write=True)
        return self._txn

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        txn = self._txn
        if kind is not None:
            txn.abort()
            if isinstance(error, self._interface._lmdb.MapFullError):
                raise self._interface._store_full() from None
            return
        interface = self._interface
        interface._writes += 1
        try:
            if interface._writes % PURGE_EVERY == 0:
                interface._purge_some(txn)
            txn.commit()
        except interface._lmdb.MapFullError:
            txn.abort()
            raise interface._store_full() from None


class LMDB(BaseSynchroInterface):
    """The context in an LMDB file: shared by every process that opens the same path."""

    def __init__(
        self,
        path: str | None = None,
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        durable: bool = False,
        prefix: str | None = None,
        serializer: Serializer | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
    ) -> None:
        self._lmdb = _import_lmdb()
        if path is not None and (not isinstance(path, str) or not path):
            raise SynchroValueError("path must be a non-empty str (or None)")
        if isinstance(map_size, bool) or not isinstance(map_size, int) or map_size < 1 << 20:
            raise SynchroValueError("map_size must be an int of at least 1 MiB")
        if not isinstance(durable, bool):
            raise SynchroValueError("durable must be True or False")
        super().__init__(prefix=prefix, serializer=serializer, max_value_size=max_value_size)
        self._path = path
        self._map_size = map_size
        self._durable = durable
        self._env: Any = None
        self._env_pid = 0
        self._env_forks = -1
        self._mutex = threading.Lock()
        self._private: str | None = None  # a directory this interface made (and removes)
        self._writes = 0
        self._purge_from = b""
        self._cleanup: Any = None

    # -- the environment --------------------------------------------------------------------

    @property
    def path(self) -> str | None:
        """The directory of the LMDB file (None until started or attached)."""
        return self._path

    def _environment(self) -> Any:
        env = self._env
        if env is not None and self._env_forks == _forks[0]:
            return env
        return self._open()

    def _open(self) -> Any:
        with self._mutex:
            if self._env is not None and self._env_forks == _forks[0]:
                return self._env
            if self._path is None:
                self._path = self._private = tempfile.mkdtemp(prefix="sanic-synchro-lmdb-")
                self._cleanup = weakref.finalize(self, shutil.rmtree, self._path, True)
            # never an environment opened by the parent of a fork: open our own
            options = {
                "map_size": self._map_size,
                "subdir": True,
                "sync": self._durable,
                "metasync": self._durable,
                "writemap": True,
                "max_readers": 1024,
                "max_spare_txns": 4,
                "mode": 0o600,
            }
            env = _acquire_environment(self._lmdb, self._path, options)
            self._env, self._env_pid, self._env_forks = env, os.getpid(), _forks[0]
            return env

    def _write(self) -> _WriteTransaction:
        """One write transaction: committed when the block ends, aborted on any error."""
        return _WriteTransaction(self)

    def _store_full(self) -> SynchroError:
        return SynchroError(
            f"LMDB store full: the map of {self._map_size} bytes is used up; give a "
            "larger map_size= (the file is sparse), or delete or expire data"
        )

    def _read(self) -> Any:
        return self._environment().begin(write=False)

    # -- life cycle -------------------------------------------------------------------------

    def start(self, seed: Callable[[BaseSynchroInterface], None] | None = None) -> Any:
        """In the main process: create the private directory (``path=None``), seed, and
        hand the path to the workers."""
        if self._path is None:
            self._path = self._private = tempfile.mkdtemp(prefix="sanic-synchro-lmdb-")
        if seed is not None:
            seed(self)
        self.close()
        return self._path

    def attach(self, handover: Any = None, *, group: int | None = None) -> None:
        """Use the main process's directory; without one, this process's own path. A worker
        of several (``group``) given no hand-over and no path refuses: a private directory
        of its own would be a store of its own, split silently from its siblings' (3
        workers, 600 increments answered 241 distinct values)."""
        if handover is not None:
            if handover != self._path:
                self.close()
                self._path = handover
            return
        if group is not None and self._path is None:
            raise SynchroError(
                "LMDB() without a path was attached in a worker that the main process did "
                "not hand a store to (init_app inside a worker's listener): each worker "
                "would keep a store of its own. Give LMDB(path=...) a directory, or call "
                "Synchro(app, interface=LMDB()) at import time, where the main process "
                "starts it and hands it to every worker"
            )

    def stop(self) -> None:
        """In the main process at the end: remove the private directory it created."""
        self.close()
        private, self._private = self._private, None
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)

    def close(self) -> None:
        with self._mutex:
            env, self._env = self._env, None
            if env is not None and self._env_pid == os.getpid() and self._path is not None:
                _release_environment(self._path)

    # -- primitives: one transaction each ----------------------------------------------------

    def _live_value(self, txn: Any, stored: bytes, now: float) -> bytes | None:
        record = txn.get(stored)
        if record is None:
            return None
        deadline, value, _ = _parse(record)
        return value if _alive(deadline, now) else None

    def raw_get(self, key: str) -> Awaitable[bytes | None]:
        # the hottest path, written out: one read transaction, one record
        stored = key.encode("utf-8", "surrogatepass")
        if len(stored) > _MAX_KEY:
            stored = _encode_key(key)[0]
        env = self._env if self._env_forks == _forks[0] and self._env is not None else None
        with (env or self._environment()).begin() as txn:
            record = txn.get(stored)
        if record is None:
            return _done(None)
        kind, deadline = _RECORD.unpack_from(record)
        if deadline != 0.0 and deadline <= time.time():
            return _done(None)
        if kind == _PLAIN:
            return _done(record[_RECORD.size :])
        return _done(_parse(record)[1])

    def raw_get_many(self, keys: list[str]) -> Awaitable[list[bytes | None]]:
        now = time.time()
        with self._read() as txn:
            return _done([self._live_value(txn, _encode_key(key)[0], now) for key in keys])

    def raw_set(self, key: str, value: bytes, ttl: float | None) -> Awaitable[None]:
        stored, original = _encode_key(key)
        deadline = 0.0 if ttl is None else time.time() + ttl
        with self._write() as txn:
            txn.put(stored, _record(value, deadline, original))
        return _done(None)

    def raw_set_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> Awaitable[None]:
        deadline = 0.0 if ttl is None else time.time() + ttl
        with self._write() as txn:
            for key, value in items:
                stored, original = _encode_key(key)
                txn.put(stored, _record(value, deadline, original))
        return _done(None)

    def raw_add_many(
        self, items: list[tuple[str, bytes]], ttl: float | None
    ) -> Awaitable[list[bytes]]:
        now = time.time()
        deadline = 0.0 if ttl is None else now + ttl
        result = []
        with self._write() as txn:
            for key, value in items:
                stored, original = _encode_key(key)
                current = self._live_value(txn, stored, now)
                if current is None:
                    txn.put(stored, _record(value, deadline, original))
                    current = value
                result.append(current)
        return _done(result)

    def raw_delete(self, keys: list[str]) -> Awaitable[int]:
        now = time.time()
        deleted = 0
        with self._write() as txn:
            for stored in {_encode_key(key)[0] for key in keys}:
                record = txn.get(stored)
                if record is not None:
                    deleted += _alive(_parse(record)[0], now)
                    txn.delete(stored)
        return _done(deleted)

    def raw_increment(self, key: str, by: int, ttl: float | None) -> Awaitable[int]:
        stored, original = _encode_key(key)
        with self._write() as txn:
            record = txn.get(stored)
            current = 0
            deadline = 0.0 if ttl is None else time.time() + ttl  # for a key it creates
            if record is not None:
                kept, value, _ = _parse(record)
                if kept == 0.0 or kept > time.time():  # an expired key counts as missing
                    current, deadline = _integer(value), kept
            result = current + by
            if not INT64_MIN <= result <= INT64_MAX:
                raise SynchroValueError("the result leaves the signed 64-bit range")
            txn.put(stored, _record(str(result).encode("ascii"), deadline, original))
        return _done(result)

    def raw_replace(self, key: str, value: bytes) -> Awaitable[bytes | None]:
        stored, original = _encode_key(key)
        now = time.time()
        with self._write() as txn:
            record = txn.get(stored)
            old, deadline = None, 0.0
            if record is not None:
                previous_deadline, previous, _ = _parse(record)
                if _alive(previous_deadline, now):
                    old, deadline = previous, previous_deadline
            txn.put(stored, _record(value, deadline, original))
        return _done(old)

    def raw_compare_and_set(
        self, key: str, expected: bytes, new: bytes, ttl: float | None
    ) -> Awaitable[bool]:
        stored, original = _encode_key(key)
        now = time.time()
        with self._write() as txn:
            if self._live_value(txn, stored, now) != expected:
                return _done(False)
            txn.put(stored, _record(new, 0.0 if ttl is None else now + ttl, original))
        return _done(True)

    def raw_expire(self, key: str, ttl: float | None) -> Awaitable[bool]:
        stored, original = _encode_key(key)
        now = time.time()
        with self._write() as txn:
            value = self._live_value(txn, stored, now)
            if value is None:
                return _done(False)
            txn.put(stored, _record(value, 0.0 if ttl is None else now + ttl, original))
        return _done(True)

    def raw_ttl(self, key: str) -> Awaitable[float | None]:
        stored, _ = _encode_key(key)
        now = time.time()
        with self._read() as txn:
            record = txn.get(stored)
            if record is None:
                return _done(None)
            deadline = _parse(record)[0]
            if deadline == 0.0 or deadline <= now:
                return _done(None)
            return _done(deadline - now)

    def _scan(
        self, txn: Any, prefix: str, after: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """(stored key, record) of every record whose key starts with ``prefix`` (hashed
        keys of the namespace included: they start with its head too), in key order; past
        stored key ``after`` if given."""
        head = prefix.encode("utf-8", "surrogatepass")
        if len(head) > _KEEP:
            raise SynchroValueError(
                f"the namespace's prefix is {len(head)} bytes; LMDB takes at most {_KEEP}"
            )
        cursor = txn.cursor()
        if not cursor.set_range(head if after is None else after):
            return
        for stored, record in cursor:
            if not stored.startswith(head):
                return
            if stored != after:
                yield stored, record

    def _purge_some(self, txn: Any) -> None:
        """Delete the expired records among the next PURGE_BATCH, leases of locks whose
        holder never released them included (records of another form)."""
        now = time.time()
        cursor = txn.cursor()
        if not cursor.set_range(self._purge_from):
            self._purge_from = b""
            return
        expired = []
        for seen, (stored, record) in enumerate(cursor, 1):
            try:
                if stored.startswith(_LOCK_MARK):
                    if _LOCK.unpack_from(record)[0] <= now:
                        expired.append(stored)
                elif not _alive(_parse(record)[0], now):
                    expired.append(stored)
            except struct.error:
                pass  # not a record of ours: leave it alone
            if seen >= PURGE_BATCH:
                self._purge_from = stored
                break
        else:
            self._purge_from = b""  # reached the end: start over next time
        for stored in expired:
            txn.delete(stored)

    def raw_keys(self, prefix: str) -> Awaitable[list[str]]:
        now = time.time()
        found = []
        with self._read() as txn:
            for stored, record in self._scan(txn, prefix):
                deadline, _, original = _parse(record)
                if _alive(deadline, now):
                    found.append((original or stored).decode("utf-8", "surrogatepass"))
        return _done(found)

    def raw_scan(self, prefix: str, cursor: Any, count: int) -> Awaitable[tuple[Any, list[str]]]:
        """A page in key order; the cursor is the last stored key handed out (keys are
        sorted in the file, so a key present throughout comes once, wherever others
        are added or deleted)."""
        now = time.time()
        found: list[str] = []
        last: bytes | None = None
        with self._read() as txn:
            for stored, record in self._scan(txn, prefix, cursor):
                deadline, _, original = _parse(record)
                if _alive(deadline, now):
                    found.append((original or stored).decode("utf-8", "surrogatepass"))
                    if len(found) >= count:
                        last = stored
                        break
        return _done((last, found))

    def raw_clear(self, prefix: str) -> Awaitable[None]:
        with self._write() as txn:
            for stored in [stored for stored, _ in self._scan(txn, prefix)]:
                txn.delete(stored)
        return _done(None)

    def raw_lock_acquire(
        self, key: str, token: str, ttl: float
    ) -> Awaitable[tuple[str | None, int]]:
        stored, _ = _encode_key(key)
        fence_key = _encode_key(_FENCE_MARK + key[len(LOCK_MARK) :])[0]
        now = time.time()
        with self._write() as txn:
            held = txn.get(stored)
            if held is not None:
                (deadline,) = _LOCK.unpack_from(held)
                if deadline > now:
                    return _done((held[_LOCK.size :].decode("utf-8", "surrogatepass"), 0))
            txn.put(stored, _LOCK.pack(now + ttl) + token.encode("utf-8", "surrogatepass"))
            kept = txn.get(fence_key)
            last = None
            if kept is not None:
                deadline, value, _ = _parse(kept)
                last = int(value) if _alive(deadline, now) else None
            fence = next_fence(now, last)
            txn.put(fence_key, _record(str(fence).encode("ascii"), now + FENCE_MEMORY, None))
        return _done((None, fence))

    def raw_lock_release(self, key: str, token: str) -> Awaitable[bool]:
        stored, _ = _encode_key(key)
        now = time.time()
        with self._write() as txn:
            held = txn.get(stored)
            if held is None:
                return _done(False)
            (deadline,) = _LOCK.unpack_from(held)
            if deadline <= now or held[_LOCK.size :] != token.encode("utf-8", "surrogatepass"):
                return _done(False)
            txn.delete(stored)
        return _done(True)

    def raw_lock_extend(self, key: str, token: str, ttl: float) -> Awaitable[bool]:
        stored, _ = _encode_key(key)
        owner = token.encode("utf-8", "surrogatepass")
        now = time.time()
        with self._write() as txn:
            held = txn.get(stored)
            if held is None or _LOCK.unpack_from(held)[0] <= now or held[_LOCK.size :] != owner:
                return _done(False)
            txn.put(stored, _LOCK.pack(now + ttl) + owner)
        return _done(True)

    def raw_locked(self, key: str) -> Awaitable[bool]:
        stored, _ = _encode_key(key)
        with self._read() as txn:
            held = txn.get(stored)
        return _done(held is not None and _LOCK.unpack_from(held)[0] > time.time())

    def _holders(self, txn: Any, stored: bytes, now: float) -> dict[str, float]:
        record = txn.get(stored)
        if record is None:
            return {}
        deadline, value, _ = _parse(record)
        if not _alive(deadline, now):
            return {}
        holders: dict[str, float] = json.loads(value)
        return {holder: end for holder, end in holders.items() if end > now}

    def raw_semaphore_acquire(
        self, key: str, token: str, limit: int, ttl: float
    ) -> Awaitable[bool]:
        stored, original = _encode_key(key)
        now = time.time()
        with self._write() as txn:
            holders = self._holders(txn, stored, now)
            if token not in holders and len(holders) >= limit:
                return _done(False)
            holders[token] = now + ttl
            value = json.dumps(holders).encode("ascii")
            txn.put(stored, _record(value, max(holders.values()), original))
        return _done(True)

    def raw_semaphore_release(self, key: str, token: str) -> Awaitable[bool]:
        stored, original = _encode_key(key)
        now = time.time()
        with self._write() as txn:
            holders = self._holders(txn, stored, now)
            held = holders.pop(token, None) is not None
            if holders:
                value = json.dumps(holders).encode("ascii")
                txn.put(stored, _record(value, max(holders.values()), original))
            elif txn.get(stored) is not None:
                txn.delete(stored)
        return _done(held)

    def raw_rate_limit(
        self, key: str, limit: int, per: float, cost: int
    ) -> Awaitable[tuple[bool, int, float, float]]:
        stored, original = _encode_key(key)
        now = time.time()  # Unix time: every process on one machine shares it
        with self._write() as txn:
            record = txn.get(stored)
            tat = None
            if record is not None:
                deadline, value, _ = _parse(record)
                if _alive(deadline, now):
                    tat = float(value)
            new_tat, answer = gcra(tat, now, limit, per, cost)
            if new_tat is not None:
                txn.put(stored, _record(repr(new_tat).encode("ascii"), new_tat, original))
        return _done(answer)

    @property
    def endpoint(self) -> str:
        return f"lmdb://{self._path}" if self._path else "not started"

    def __repr__(self) -> str:
        return f"LMDB({self._path or 'not started'})"


def _integer(value: bytes) -> int:
    """The integer a stored value holds (ASCII decimal, as every serializer writes ints)."""
    if value.isdigit() and (value[0] != 48 or len(value) == 1):  # canonical: no leading 0
        return int(value)
    if value[:1] == b"-" and value[1:].isdigit() and value[1] != 48:
        return int(value)
    raise SynchroTypeError("the stored value is not an integer")
