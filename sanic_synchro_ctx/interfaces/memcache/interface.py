"""Memcache: the context in memcached, through ``aiomcache``, with memcached's traps closed.

The traps, each in the module named for it: :mod:`.keys` (any str key to a valid
memcached key, injectively), :mod:`.generations` (``clear()`` without ``flush_all``),
:mod:`.counters` (signed 64-bit counters on ``incr``, overflow refused before it is
written), :mod:`.expiry` (memcached's own expiry, in whole seconds, for every operation),
:mod:`.client` (cancellation and a server that goes away). Every exchange with memcached is
bounded by ``timeout`` (aiomcache itself never times out).

``keys()`` raises SynchroUnsupported: memcached cannot list keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

from ...batching import DEFAULT_MAX_BATCH, Batcher, batch_limit
from ...checks import INT64_MAX, INT64_MIN, check_timeout
from ...deadlines import bounded
from ...errors import (
    SynchroError,
    SynchroTypeError,
    SynchroUnsupported,
    SynchroValueError,
    missing_client,
)
from ...fencing import FENCE_MEMORY, next_fence
from ...ratelimit import gcra
from ...serializer import Serializer
from ..base import DEFAULT_TIMEOUT, LOCK_MARK, RATE_MARK, SEMAPHORE_MARK
from ..network import NetworkInterface
from . import counters, expiry
from .client import Item, from_item, safe_client_class, storage, to_item, unpack
from .generations import Generation, Op, Read, Write
from .keys import KeyMap
from .rendezvous import check_servers

__all__ = ["MEMCACHE_MAX_VALUE_SIZE", "Memcache"]

T = TypeVar("T")

#: memcached's default item limit is 1 MiB including key and header: stay below it.
MEMCACHE_MAX_VALUE_SIZE = 1_000_000

#: Most gets/cas rounds an operation on a semaphore or a rate limit takes under contention.
SWAP_ATTEMPTS = 64

#: What a gets/cas step decides: the item to store (None: leave it), its deadline flags,
#: and the operation's result.
Choice = tuple[Any, int, Any]


def _import_aiomcache() -> Any:
    try:
        import aiomcache
    except ImportError:
        raise missing_client("Memcache", "aiomcache", "aiomcache", "memcache") from None
    return aiomcache


def _incr(name: Callable[[bytes], bytes], step: int, generation: bytes) -> list[bytes]:
    return [b"incr %s %d\r\n" % (name(generation), step)]


class _Session(NamedTuple):
    """One loop's client and its batcher."""

    client: Any
    batcher: Batcher[Op] | None


class Memcache(NetworkInterface[_Session]):
    """The context in memcached, through ``aiomcache``: on one server (``host``, ``port``,
    or an ``aiomcache.Client`` to copy the settings of), or spread over several with
    ``servers=[(host, port), ...]`` (see :mod:`.sharded`)."""

    ttl_resolution = 1.0
    lists_keys = False
    ordered_batches = False  # an exchange's get-and-swap steps interleave with the others'

    def __new__(cls, *args: Any, servers: Any = None, **options: Any) -> Memcache:
        """``Memcache(servers=[...])`` with several servers builds a
        :class:`~.sharded.ShardedMemcache` (still a Memcache)."""
        if cls is Memcache and servers is not None and len(check_servers(servers)) > 1:
            from .sharded import ShardedMemcache

            return super().__new__(ShardedMemcache)
        return super().__new__(cls)

    def __init__(
        self,
        host: Any = "127.0.0.1",
        port: int = 11211,
        pool_size: int = 4,
        *,
        servers: Any = None,
        prefix: str | None = None,
        serializer: Serializer | None = None,
        max_value_size: int = MEMCACHE_MAX_VALUE_SIZE,
        timeout: float | None = DEFAULT_TIMEOUT,
        batching: bool = True,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        module = _import_aiomcache()
        if servers is not None:  # one server (several make a ShardedMemcache)
            if host != "127.0.0.1" or port != 11211:
                raise SynchroValueError("Memcache takes host and port, or servers=, not both")
            ((host, port, _),) = check_servers(servers)
        self._max_batch = batch_limit(batching, max_batch)
        self._timeout = check_timeout(timeout)
        self._module = module
        if isinstance(host, module.Client):
            # the given client's settings (each event loop gets a client of its own)
            pool = getattr(host, "_pool", None)
            try:
                host, port, pool_size = pool._host, pool._port, pool._maxsize  # type: ignore[union-attr]
                self._conn_args = dict(pool.conn_args)  # type: ignore[union-attr]
            except AttributeError:
                raise SynchroValueError(
                    "cannot read this aiomcache.Client's settings (_pool._host, _port, "
                    "_maxsize, conn_args; checked against aiomcache 0.8): pass host=, port= "
                    "and pool_size= instead"
                ) from None
        else:
            self._conn_args = {}
        if not isinstance(host, str):
            raise SynchroValueError("Memcache takes a host name or an aiomcache.Client")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise SynchroValueError("pool_size must be an int >= 1")
        self._host, self._port, self._pool_size = host, port, pool_size
        self._generation_of: Generation | None = None
        self.connection_errors = (OSError, EOFError, asyncio.TimeoutError)
        super().__init__(prefix=prefix, serializer=serializer, max_value_size=max_value_size)

    # -- sessions and exchanges -----------------------------------------------------------

    async def open_session(self) -> _Session:
        client = safe_client_class(self._module)(
            self._host,
            self._port,
            pool_size=self._pool_size,
            conn_args=self._conn_args or None,
            get_flag_handler=to_item,
            set_flag_handler=from_item,
        )
        if self._max_batch is None:
            return _Session(client, None)
        generation = self._generation()
        batcher: Batcher[Op] = Batcher(
            asyncio.get_running_loop(),
            functools.partial(generation.send_one, client),
            functools.partial(generation.send_many, client),
            self._max_batch,
            self._timeout,
        )
        return _Session(client, batcher)

    async def close_session(self, session: _Session) -> None:
        await session.client.close()

    def _rt(self, exchange: Awaitable[T]) -> Awaitable[T]:
        """One exchange with memcached outside the batcher (counted as a round trip of its
        own), bounded by the timeout (aiomcache has none). An exchange interrupted half way
        closes its connection (see .client)."""
        session = self._sessions.current()
        if session is not None and session.batcher is not None:
            session.batcher.count_alone()
        return bounded(exchange, self._timeout)

    def _bounded(self, exchange: Awaitable[T]) -> Awaitable[T]:
        """One exchange bounded by the timeout, counted by whoever sends it (the batcher)."""
        return bounded(exchange, self._timeout)

    def _generation(self) -> Generation:
        generation = self._generation_of
        if generation is None:
            generation = Generation(KeyMap(self._namespace()), self._bounded)
            self._generation_of = generation
        return generation

    def _run(self, session: _Session, op: Op) -> Awaitable[Any]:
        """Send ``op``: through the session's batcher when batching is on."""
        if session.batcher is None:
            return self._generation().send_one(session.client, op)
        return session.batcher.submit(op)

    def _reads(self, session: _Session, *keys: str) -> Awaitable[list[tuple[bytes, int] | None]]:
        """Data items of ``keys`` (None: missing), read together with the generation token;
        under load, merged with concurrent reads into one multi-get."""
        return self._run(session, Read(keys))

    def _write(self, session: _Session, build: Callable[[bytes], list[bytes]]) -> Awaitable[Any]:
        """The reply lines of the commands ``build(generation)``, sent together with a read
        of the generation; under load, in one exchange with concurrent operations."""
        return self._run(session, Write(build))

    def _expect(self, reply: bytes, *allowed: bytes) -> bytes:
        if reply not in allowed:
            raise self._module.exceptions.ClientException("memcached answered", reply)
        return reply

    def _data_key(self, key: str) -> Callable[[bytes], bytes]:
        keys = self._generation().keys
        return lambda generation: keys.data_key(key, generation)

    async def _swap(self, key: str, choose: Callable[[tuple[bytes, int] | None], Choice]) -> Any:
        """A gets/cas loop, two exchanges when nothing interferes. ``choose(item)`` answers
        (stored, deadline, result), or (None, 0, result) to leave the item alone."""
        session = self._sessions.current() or await self.session()
        client = session.client
        generation = self._generation()
        generation_key = generation.keys.generation_key
        while True:
            token = generation.token or await generation.current(client)
            name = generation.keys.data_key(key, token)
            values, tokens = await self._rt(client.gets_many(generation_key, name))
            seen = values.get(generation_key)
            if seen != token:
                await generation.current(client, seen)
                continue
            raw = values.get(name)
            new, deadline, result = choose(unpack(raw))
            if new is None:
                return result
            exptime = expiry.exptime(deadline)
            if raw is None:
                command = storage(b"add", name, new, exptime)
            else:
                command = storage(b"cas", name, new, exptime, tokens[name])
            (reply,), seen = await self._rt(client.exchange([command], generation_key))
            if seen != token:
                await generation.current(client, seen)
            elif self._expect(reply, b"STORED", b"EXISTS", b"NOT_FOUND", b"NOT_STORED") == (
                b"STORED"
            ):
                return result

    # -- primitives -----------------------------------------------------------------------

    async def raw_get(self, key: str) -> bytes | None:
        session = self._sessions.current() or await self.session()
        (item,) = await self._reads(session, key)
        return None if item is None else counters.value_of(item)

    async def raw_get_many(self, keys: list[str]) -> list[bytes | None]:
        session = self._sessions.current() or await self.session()
        items = await self._reads(session, *keys)
        return [None if item is None else counters.value_of(item) for item in items]

    async def raw_set(self, key: str, value: bytes, ttl: float | None) -> None:
        session = self._sessions.current() or await self.session()
        deadline = expiry.deadline(ttl)
        stored, exptime = counters.stored_form(value, deadline), expiry.exptime(deadline)
        name = self._data_key(key)
        (reply,) = await self._write(session, lambda g: [storage(b"set", name(g), stored, exptime)])
        self._expect(reply, b"STORED")

    async def raw_set_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> None:
        # memcached has no multi-set: each key is written on its own, in one exchange.
        session = self._sessions.current() or await self.session()
        deadline = expiry.deadline(ttl)
        exptime = expiry.exptime(deadline)
        keys = self._generation().keys
        stored = [(key, counters.stored_form(value, deadline)) for key, value in items]
        replies = await self._write(
            session,
            lambda g: [storage(b"set", keys.data_key(k, g), v, exptime) for k, v in stored],
        )
        for reply in replies:
            self._expect(reply, b"STORED")

    async def raw_add_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> list[bytes]:
        return list(await asyncio.gather(*(self._add_one(key, value, ttl) for key, value in items)))

    async def _add_one(self, key: str, value: bytes, ttl: float | None) -> bytes:
        """Set ``key`` if missing; the serialized value it now holds."""
        session = self._sessions.current() or await self.session()
        deadline = expiry.deadline(ttl)
        stored, exptime = counters.stored_form(value, deadline), expiry.exptime(deadline)
        name = self._data_key(key)
        while True:
            (reply,) = await self._write(
                session, lambda g: [storage(b"add", name(g), stored, exptime)]
            )
            if self._expect(reply, b"STORED", b"NOT_STORED") == b"STORED":
                return value
            (item,) = await self._reads(session, key)
            if item is not None:
                return counters.value_of(item)
            # it expired or was deleted between the add and the read: try again

    async def raw_delete(self, keys: list[str]) -> int:
        session = self._sessions.current() or await self.session()
        names = list(dict.fromkeys(keys))
        key_map = self._generation().keys
        replies = await self._write(
            session, lambda g: [b"delete %s\r\n" % key_map.data_key(k, g) for k in names]
        )
        return sum(self._expect(r, b"DELETED", b"NOT_FOUND") == b"DELETED" for r in replies)

    async def raw_increment(self, key: str, by: int, ttl: float | None) -> int:
        """``incr`` for counters of ours (one exchange), gets/cas for everything else (see
        :mod:`.counters`): an overflow can never be applied by memcached, seen by anyone.
        A missing key is created (``add``) with ``ttl``; an existing one keeps its expiry."""
        if not -counters.STEP < by < counters.STEP:
            return await self._cas_increment(key, by, ttl)
        session = self._sessions.current() or await self.session()
        step = by % counters.WRAP  # a negative step is a modular increment
        deadline = expiry.deadline(ttl)
        fresh = Item(counters.encode(by), counters.COUNTER | deadline)
        exptime = expiry.exptime(deadline)
        name = self._data_key(key)
        while True:
            (reply,) = await self._write(session, functools.partial(_incr, name, step))
            if reply.isdigit():
                result = counters.decode(int(reply))
                if -counters.NATIVE < result < counters.NATIVE:
                    return result
                if -counters.NATIVE - counters.DRIFT < result < counters.NATIVE + counters.DRIFT:
                    # ours, and out of incr's range from now on: move it to the exact form
                    with contextlib.suppress(SynchroError):
                        await self._cas_increment(key, 0)
                    return result
                # A number some other client wrote (ours are never this far out): undo the
                # step, which nothing of ours could have read, and refuse.
                undo = (counters.WRAP - step) % counters.WRAP
                await asyncio.shield(self._write(session, functools.partial(_incr, name, undo)))
                raise SynchroTypeError("the stored value was not written by this interface")
            if reply == b"NOT_FOUND":
                (reply,) = await self._write(
                    session, lambda g: [storage(b"add", name(g), fresh, exptime)]
                )
                if self._expect(reply, b"STORED", b"NOT_STORED") == b"STORED":
                    return by
                continue  # another client created it first: increment that one
            # CLIENT_ERROR: not a number to memcached (a marked value): exact arithmetic
            return await self._cas_increment(key, by, ttl)

    async def _cas_increment(self, key: str, by: int, ttl: float | None = None) -> int:
        """An exact increment by gets/cas; ``by=0`` moves a counter past NATIVE out of
        ``incr``'s reach. Refuses a non-integer or an overflow before writing anything."""

        def choose(item: tuple[bytes, int] | None) -> Choice:
            if item is None:
                deadline = expiry.deadline(ttl)
                return counters.stored_form(str(by).encode("ascii"), deadline), deadline, by
            value = counters.value_of(item)
            if not counters.INTEGER.fullmatch(value):
                raise SynchroTypeError("the stored value is not an integer")
            result = int(value) + by
            if not INT64_MIN <= result <= INT64_MAX:
                raise SynchroValueError("the result leaves the signed 64-bit range")
            deadline = item[1] & ~counters.COUNTER  # keep the current expiry
            stored = counters.stored_form(str(result).encode("ascii"), deadline)
            return stored, deadline, result

        result: int = await self._swap(key, choose)
        return result

    async def raw_replace(self, key: str, value: bytes) -> bytes | None:
        def choose(item: tuple[bytes, int] | None) -> Choice:
            if item is None:
                return counters.stored_form(value, 0), 0, None
            deadline = item[1] & ~counters.COUNTER  # keep the current expiry
            return counters.stored_form(value, deadline), deadline, counters.value_of(item)

        old: bytes | None = await self._swap(key, choose)
        return old

    async def raw_compare_and_set(
        self, key: str, expected: bytes, new: bytes, ttl: float | None
    ) -> bool:
        def choose(item: tuple[bytes, int] | None) -> Choice:
            if item is None or counters.value_of(item) != expected:
                return None, 0, False
            deadline = expiry.deadline(ttl)
            return counters.stored_form(new, deadline), deadline, True

        swapped: bool = await self._swap(key, choose)
        return swapped

    async def raw_expire(self, key: str, ttl: float | None) -> bool:
        def choose(item: tuple[bytes, int] | None) -> Choice:
            if item is None:
                return None, 0, False
            deadline = expiry.deadline(ttl)
            return counters.stored_form(counters.value_of(item), deadline), deadline, True

        existed: bool = await self._swap(key, choose)
        return existed

    async def raw_ttl(self, key: str) -> float | None:
        session = self._sessions.current() or await self.session()
        (item,) = await self._reads(session, key)
        return None if item is None else expiry.left(item[1])

    async def raw_keys(self, prefix: str) -> list[str]:
        raise SynchroUnsupported(
            "memcached cannot list its keys, so Memcache.keys() is not available"
        )

    async def raw_scan(self, prefix: str, cursor: Any, count: int) -> tuple[Any, list[str]]:
        raise SynchroUnsupported(
            "memcached cannot list its keys, so Memcache.scan() is not available"
        )

    async def raw_clear(self, prefix: str) -> None:
        session = self._sessions.current() or await self.session()
        await self._generation().renew(session.client)

    async def raw_lock_acquire(self, key: str, token: str, ttl: float) -> tuple[str | None, int]:
        session = self._sessions.current() or await self.session()
        client = session.client
        keys = self._generation().keys
        name = keys.lock_name(key)
        owner = counters.MARK + token.encode("utf-8", "surrogatepass")
        while True:
            if await self._rt(client.add(name, owner, expiry.lease(ttl))):
                return None, await self._fence(client, keys.marked_name("fence", key, LOCK_MARK))
            holder = await self._rt(client.get(name))
            if holder is not None:
                data = holder.data if isinstance(holder, Item) else holder
                return str(data[1:].decode("utf-8", "surrogatepass")), 0
            # released between the add and the get: try again

    async def _fence(self, client: Any, name: bytes) -> int:
        """The next fencing token of a lock: ``incr`` of its counter, which starts at this
        machine's clock in microseconds and expires FENCE_MEMORY seconds after it started
        (``incr`` keeps an item's expiry): the next one starts from the clock again, above
        every token the old one gave (fencing.py)."""
        refused = self._module.exceptions.ClientException
        for _ in range(SWAP_ATTEMPTS):
            try:
                return int(await self._rt(client.incr(name)))
            except refused:  # aiomcache raises for NOT_FOUND (and for a non-number)
                pass
            start = next_fence(time.time(), None)
            kept = expiry.lease(FENCE_MEMORY)
            if await self._rt(client.add(name, str(start).encode("ascii"), kept)):
                return start
        raise SynchroError(f"memcached: the fencing counter {name!r} is not a number")

    async def raw_lock_release(self, key: str, token: str) -> bool:
        session = self._sessions.current() or await self.session()
        client = session.client
        name = self._generation().keys.lock_name(key)
        raw, cas = await self._rt(client.gets(name))
        if raw is None or raw != counters.MARK + token.encode("utf-8", "surrogatepass"):
            return False
        # A conditional delete: replace our own lease (cas) by an item already expired.
        return bool(await self._rt(client.cas(name, b"", cas, expiry.PAST)))

    async def raw_lock_extend(self, key: str, token: str, ttl: float) -> bool:
        session = self._sessions.current() or await self.session()
        client = session.client
        name = self._generation().keys.lock_name(key)
        owner = counters.MARK + token.encode("utf-8", "surrogatepass")
        raw, cas = await self._rt(client.gets(name))
        if raw != owner:
            return False
        return bool(await self._rt(client.cas(name, owner, cas, expiry.lease(ttl))))

    async def raw_locked(self, key: str) -> bool:
        session = self._sessions.current() or await self.session()
        name = self._generation().keys.lock_name(key)
        return await self._rt(session.client.get(name)) is not None

    async def _swap_marked(self, name: bytes, choose: Callable[[bytes | None], Choice]) -> Any:
        """A gets/cas loop on a key outside the generations (bounded: SWAP_ATTEMPTS).
        ``choose(value)`` answers (bytes to store or None, deadline flags, result)."""
        client = (self._sessions.current() or await self.session()).client
        for _ in range(SWAP_ATTEMPTS):
            raw, cas = await self._rt(client.gets(name))
            value = None if raw is None else (raw.data if isinstance(raw, Item) else raw)
            new, deadline, result = choose(value)
            if new is None:
                return result
            exptime = expiry.exptime(deadline)
            if raw is None:
                stored = await self._rt(client.add(name, new, exptime))
            else:
                stored = await self._rt(client.cas(name, new, cas, exptime))
            if stored:
                return result
        raise SynchroError(f"memcached: {name!r} kept changing under {SWAP_ATTEMPTS} attempts")

    async def raw_semaphore_acquire(self, key: str, token: str, limit: int, ttl: float) -> bool:
        name = self._generation().keys.marked_name("semaphore", key, SEMAPHORE_MARK)

        def choose(value: bytes | None) -> Choice:
            now = time.time()
            holders = {} if value is None else json.loads(value)
            holders = {holder: end for holder, end in holders.items() if end > now}
            if token not in holders and len(holders) >= limit:
                return None, 0, False
            holders[token] = now + ttl
            deadline = expiry.deadline(max(holders.values()) - now)
            return json.dumps(holders).encode("ascii"), deadline, True

        acquired: bool = await self._swap_marked(name, choose)
        return acquired

    async def raw_semaphore_release(self, key: str, token: str) -> bool:
        name = self._generation().keys.marked_name("semaphore", key, SEMAPHORE_MARK)

        def choose(value: bytes | None) -> Choice:
            holders = {} if value is None else json.loads(value)
            if token not in holders:
                return None, 0, False
            now = time.time()
            live = holders.pop(token) > now
            rest = [end for end in holders.values() if end > now]
            deadline = expiry.deadline(max(rest) - now) if rest else expiry.deadline(0.001)
            return json.dumps(holders).encode("ascii"), deadline, live

        released: bool = await self._swap_marked(name, choose)
        return released

    async def raw_rate_limit(
        self, key: str, limit: int, per: float, cost: int
    ) -> tuple[bool, int, float, float]:
        """GCRA by gets/cas on the TAT (Unix time: every client's clock should be in sync,
        as memcached gives none)."""
        name = self._generation().keys.marked_name("rate", key, RATE_MARK)

        def choose(value: bytes | None) -> Choice:
            now = time.time()
            new_tat, answer = gcra(None if value is None else float(value), now, limit, per, cost)
            if new_tat is None:
                return None, 0, answer
            return repr(new_tat).encode("ascii"), expiry.deadline(new_tat - now), answer

        answer: tuple[bool, int, float, float] = await self._swap_marked(name, choose)
        return answer

    @property
    def servers(self) -> list[tuple[str, int, float]]:
        """(host, port, weight) of every server: here, the one."""
        return [(self._host, self._port, 1.0)]

    def server_of(self, key: str) -> str:
        """``host:port`` of the memcached server that holds ``key`` (of this namespace)."""
        self._key(key)
        return f"{self._host}:{self._port}"

    @property
    def endpoint(self) -> str:
        return f"memcached://{self._host}:{self._port}"

    def __repr__(self) -> str:
        return f"Memcache({self._host}:{self._port})"
