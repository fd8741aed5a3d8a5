"""RedisInterface: every primitive on Redis, written once over a small client adapter.

Every operation is one round trip: a native command where Redis has one (GET, MGET,
SET ... PX, INCRBY, PEXPIRE, PTTL, DEL; SET ... NX GET for one key's set_default where the
session can send it) and a Lua script where a check and a write must be one step
(:mod:`.scripts`). Counters stay plain integers, so ``redis-cli INCR`` and
``increment`` agree. ``keys()``/``clear()`` SCAN the namespace; nothing ever flushes a
database. AIORedis and AsyncioRedis differ only in their :class:`RedisSession`: how a
command reaches Redis through their client, and how commands are batched.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ...batching import Batcher
from ...fencing import FENCE_MEMORY
from ...pipeline import in_pipeline
from ..base import LOCK_MARK
from ..network import NetworkInterface
from .scripts import (
    decode_key,
    encode_key,
    increment_error,
    match_pattern,
    milliseconds,
    seconds_left,
    split_netstrings,
)

__all__ = ["IncrementRefused", "RedisInterface", "RedisSession", "SetIfMissingRefused"]

#: Keys deleted per DEL by clear().
_CHUNK = 500
#: Each lock's last fencing token: the lock's key with this mark instead of LOCK_MARK,
#: kept FENCE_MEMORY seconds (fencing.py).
FENCE_MARK = "\x00fence\x00"
_FENCE_MS = milliseconds(FENCE_MEMORY)
#: Length of a Redis run_id, which every lease script's answer starts with.
_RUN_ID = 40


class IncrementRefused(Exception):
    """INCRBY answered with an error: the value is not an integer, or the sum overflows
    (Redis then left the value as it was)."""


class SetIfMissingRefused(Exception):
    """Redis refused ``SET ... NX GET`` as a syntax error (before 7.0): nothing was written."""


T = TypeVar("T")


class RedisSession(ABC):
    """One event loop's connection to Redis through some client: the commands the
    primitives need. Keys and values are bytes; every method is one round trip (batched
    with concurrent ones where the session batches)."""

    batcher: Batcher[Any] | None = None

    @abstractmethod
    def get(self, key: bytes) -> Awaitable[bytes | None]: ...

    @abstractmethod
    async def mget(self, keys: list[bytes]) -> list[bytes | None]: ...

    @abstractmethod
    def set(self, key: bytes, value: bytes, px: int | None) -> Awaitable[object]: ...

    #: Whether :meth:`set_if_missing` may be tried: the session's client can send
    #: ``SET ... NX GET`` and the server has not refused it.
    sets_if_missing: bool = False

    async def set_if_missing(self, key: bytes, value: bytes, px: int | None) -> bytes | None:
        """``SET key value NX GET [PX px]`` (Redis >= 7.0): the value ``key`` held, or None
        when it was missing and now holds ``value``. SetIfMissingRefused (and
        :attr:`sets_if_missing` False from then on) where the server refuses the command."""
        raise SetIfMissingRefused

    @abstractmethod
    async def incrby(self, key: bytes, by: int) -> int:
        """INCRBY; IncrementRefused when Redis answers with an error."""

    @abstractmethod
    async def pexpire(self, key: bytes, ms: int) -> bool: ...

    @abstractmethod
    async def pttl(self, key: bytes) -> int: ...

    @abstractmethod
    async def delete(self, keys: Sequence[bytes]) -> int: ...

    @abstractmethod
    async def scan(self, match: bytes) -> list[bytes]:
        """Every key matching ``match`` (SCAN, on every node of a cluster)."""

    @abstractmethod
    async def scan_page(
        self, head: bytes, match: bytes, cursor: Any, count: int
    ) -> tuple[Any, list[bytes]]:
        """One SCAN step over the keys matching ``match`` (all in the slot of ``head`` on a
        cluster): (the next cursor, None once done; the keys). ``cursor`` None starts."""

    @abstractmethod
    async def script(self, name: str, keys: list[bytes], args: list[Any]) -> Any:
        """Run script ``name`` of :data:`.scripts.SCRIPTS` (loaded as needed; sent again
        only when Redis did not have it, NOSCRIPT, so it never runs twice)."""

    async def prepare(self) -> None:  # noqa: B027 - a session may need nothing
        """Before a pipeline: load what an operation would otherwise fetch first (scripts),
        so that each operation's command is issued at once, in the pipeline's order."""

    @abstractmethod
    def publish(self, channel: bytes, data: bytes) -> Awaitable[int]:
        """PUBLISH (SPUBLISH on a cluster): how many subscribers received it. (A plain
        method returning the command's awaitable: one coroutine layer less per publish.)"""

    @abstractmethod
    async def close(self) -> None: ...


class RedisInterface(NetworkInterface[RedisSession]):
    """The primitives on Redis; subclasses provide :meth:`open_session` (their client)
    and :meth:`raw_listen` (a subscribed connection of their client)."""

    notifies = True

    async def close_session(self, session: RedisSession) -> None:
        await session.close()

    async def pipeline_batcher(self) -> Batcher[Any] | None:
        session = self._sessions.current() or await self.session()
        if session.batcher is not None:
            await session.prepare()
        return session.batcher

    # get, set and publish return the session's awaitable itself (no coroutine of their
    # own) once the loop's session is open.

    def raw_get(self, key: str) -> Awaitable[bytes | None]:
        session = self._sessions.current()
        if session is None:
            return self._in_session(lambda opened: opened.get(encode_key(key)))
        return session.get(encode_key(key))

    async def raw_get_many(self, keys: list[str]) -> list[bytes | None]:
        session = self._sessions.current() or await self.session()
        return await session.mget([encode_key(key) for key in keys])

    def raw_set(self, key: str, value: bytes, ttl: float | None) -> Awaitable[object]:
        session = self._sessions.current()
        px = None if ttl is None else milliseconds(ttl)
        if session is None:
            return self._in_session(lambda opened: opened.set(encode_key(key), value, px))
        return session.set(encode_key(key), value, px)

    async def _in_session(self, command: Callable[[RedisSession], Awaitable[T]]) -> T:
        """``command`` issued on the running loop's session, opened first."""
        return await command(await self.session())

    async def raw_set_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> None:
        session = self._sessions.current() or await self.session()
        px = "" if ttl is None else milliseconds(ttl)
        keys = [encode_key(key) for key, _ in items]
        await session.script("set_many", keys, [px, *(value for _, value in items)])

    async def raw_add_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> list[bytes]:
        session = self._sessions.current() or await self.session()
        if (
            len(items) == 1
            and session.sets_if_missing
            and not (self.ordered_batches and in_pipeline.get())
        ):
            # One key: a native command instead of the script (Redis runs it in less time).
            # Not in a pipeline sent as one round trip: the fallback below would come after
            # operations queued behind this one.
            ((key, value),) = items
            try:
                held = await session.set_if_missing(
                    encode_key(key), value, None if ttl is None else milliseconds(ttl)
                )
            except SetIfMissingRefused:
                pass  # Redis < 7.0: nothing was written; the script does it
            else:
                return [value if held is None else held]
        px = "" if ttl is None else milliseconds(ttl)
        keys = [encode_key(key) for key, _ in items]
        stored = await session.script("add_many", keys, [px, *(value for _, value in items)])
        return split_netstrings(stored)

    async def raw_delete(self, keys: list[str]) -> int:
        session = self._sessions.current() or await self.session()
        return await session.delete(list({encode_key(key): None for key in keys}))

    async def raw_increment(self, key: str, by: int, ttl: float | None) -> int:
        session = self._sessions.current() or await self.session()
        raw = encode_key(key)
        if ttl is None and not (self.ordered_batches and in_pipeline.get()):
            try:
                return await session.incrby(raw, by)
            except IncrementRefused:
                # INCRBY refused and left the value as it was; tell the caller why. (In a
                # pipeline sent as one round trip this read would come after operations
                # queued behind, which may change the value: there the script says why.)
                raise increment_error(await session.get(raw)) from None
        px = "" if ttl is None else milliseconds(ttl)
        value = await session.script("increment_ttl", [raw], [by, px])
        if isinstance(value, bytes | str):  # refused: "!" and the value it found
            raise increment_error(value[1:])
        return int(value)

    async def raw_replace(self, key: str, value: bytes) -> bytes | None:
        session = self._sessions.current() or await self.session()
        old: bytes | None = await session.script("replace", [encode_key(key)], [value])
        return old

    async def raw_compare_and_set(
        self, key: str, expected: bytes, new: bytes, ttl: float | None
    ) -> bool:
        session = self._sessions.current() or await self.session()
        px = "" if ttl is None else milliseconds(ttl)
        swapped = await session.script("compare_and_set", [encode_key(key)], [expected, new, px])
        return bool(swapped)

    async def raw_expire(self, key: str, ttl: float | None) -> bool:
        session = self._sessions.current() or await self.session()
        if ttl is None:
            return bool(await session.script("persist", [encode_key(key)], []))
        return await session.pexpire(encode_key(key), milliseconds(ttl))

    async def raw_ttl(self, key: str) -> float | None:
        session = self._sessions.current() or await self.session()
        return seconds_left(await session.pttl(encode_key(key)))

    async def raw_keys(self, prefix: str) -> list[str]:
        session = self._sessions.current() or await self.session()
        return [decode_key(raw) for raw in await session.scan(match_pattern(prefix))]

    async def raw_scan(self, prefix: str, cursor: Any, count: int) -> tuple[Any, list[str]]:
        """SCAN: the cursor holds Redis's cursor and the keys handed out so far (SCAN may
        return a key twice while Redis resizes its table: a repeat is dropped here)."""
        session = self._sessions.current() or await self.session()
        position, seen = (None, set()) if cursor is None else cursor
        position, found = await session.scan_page(
            encode_key(prefix), match_pattern(prefix), position, count
        )
        fresh = [raw for raw in dict.fromkeys(found) if raw not in seen]
        seen.update(fresh)
        return (None if position is None else (position, seen)), [decode_key(r) for r in fresh]

    async def raw_clear(self, prefix: str) -> None:
        session = self._sessions.current() or await self.session()
        found = await session.scan(match_pattern(prefix))
        for start in range(0, len(found), _CHUNK):
            await session.delete(found[start : start + _CHUNK])

    #: The run_id of the Redis server this interface met (scripts.py, "Store loss").
    _met_server = ""

    def _server_answer(self, raw: Any) -> str:
        """A lease script's answer without the server's run_id, which it remembers once
        that server's grace period ("=") is over."""
        answer = decode_key(raw)
        rest = answer[_RUN_ID:]
        if rest != "=":
            self._met_server = answer[:_RUN_ID]
        return rest

    async def raw_lock_acquire(self, key: str, token: str, ttl: float) -> tuple[str | None, int]:
        session = self._sessions.current() or await self.session()
        keys = [encode_key(key), encode_key(FENCE_MARK + key[len(LOCK_MARK) :])]
        arguments = [token, milliseconds(ttl), _FENCE_MS, self._met_server]
        answer = self._server_answer(await session.script("lock_acquire", keys, arguments))
        if answer[:1] == "+":
            return None, int(answer[1:])
        if answer[:1] == "=":  # a new server's grace period: held by whoever held it before
            return "", 0
        return answer[1:], 0

    async def raw_lock_extend(self, key: str, token: str, ttl: float) -> bool:
        session = self._sessions.current() or await self.session()
        extended = await session.script(
            "lock_extend", [encode_key(key)], [token, milliseconds(ttl)]
        )
        return bool(extended)

    async def raw_locked(self, key: str) -> bool:
        session = self._sessions.current() or await self.session()
        return await session.pttl(encode_key(key)) > 0

    async def raw_semaphore_acquire(self, key: str, token: str, limit: int, ttl: float) -> bool:
        session = self._sessions.current() or await self.session()
        args = [token, limit, milliseconds(ttl), self._met_server]
        answer = await session.script("semaphore_acquire", [encode_key(key)], args)
        return self._server_answer(answer) == "1"

    async def raw_semaphore_release(self, key: str, token: str) -> bool:
        session = self._sessions.current() or await self.session()
        return bool(await session.script("semaphore_release", [encode_key(key)], [token]))

    async def raw_rate_limit(
        self, key: str, limit: int, per: float, cost: int
    ) -> tuple[bool, int, float, float]:
        session = self._sessions.current() or await self.session()
        args = [limit, repr(per), cost]
        answer = decode_key(await session.script("rate_limit", [encode_key(key)], args)).split()
        return answer[0] == "1", int(answer[1]), float(answer[2]), float(answer[3])

    def raw_publish(self, channel: str, data: bytes) -> Awaitable[int]:
        session = self._sessions.current()
        if session is None:
            return self._in_session(lambda opened: opened.publish(encode_key(channel), data))
        return session.publish(encode_key(channel), data)

    async def raw_lock_release(self, key: str, token: str) -> bool:
        session = self._sessions.current() or await self.session()
        return bool(await session.script("lock_release", [encode_key(key)], [token]))
