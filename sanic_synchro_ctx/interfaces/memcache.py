"""Memcache: the context in memcached, through ``aiomcache``, with memcached's traps closed.

Keys
    Every str key maps to a valid memcached key (<= 250 bytes, no whitespace or control
    characters), injectively: a key made only of printable ASCII other than ``#`` that fits
    is used as it is; any other key becomes ``#`` + base64url(SHA-256(key)). Plain keys never
    contain ``#``, so no plain key can take a hashed form.
Generations
    ``clear()`` must not ``flush_all`` a server others may share. Every data key includes the
    namespace's generation, a random token stored under the namespace's generation key, and
    ``clear()`` replaces the token: the old generation's keys become unreachable and age out.
    Reads fetch the token in the same multi-get as the data; writes check it in parallel and
    are redone on the new generation when a clear moved it. A random token (never a counter)
    means an evicted generation key can never bring old data back.
Counters
    Integers of magnitude below 2**61 are stored as decimal ``value + 2**62`` with a counter
    flag, so memcached's unsigned ``incr`` does signed arithmetic (a negative step is a
    modular ``incr``) in one round trip, and a missing key is created by ``add`` (incr ->
    add -> retry). Steps of 2**32 or more, and counters beyond 2**61, go through an exact
    gets/cas loop that refuses an overflow before anything is written: memcached cannot be
    told to refuse one, so ``incr`` is only ever used where the sum stays far inside the
    signed range (a counter pushed past 2**61 by ``incr`` is moved out of its reach at
    once). The offset also keeps stored numbers below 2**63, which memcached misreads now
    and then. Other values carry a marker byte that memcached never reads as a number; a
    number written into our keys by another client is detected by the size of ``incr``'s
    answer, the step undone, and SynchroTypeError raised.
Expiry
    memcached decides: an item it no longer returns is gone for every operation at once
    (``get``, ``incr``, ``add``, ``delete``), so no operation can act on a key another one
    reported expired. memcached counts whole seconds with a clock that lags up to one: the
    deadline (the TTL rounded up to a whole second) is kept in the item's flags, which is
    how ``ttl()`` answers, and memcached is asked to remove the item in the two seconds after
    it (relative exptime one second beyond the deadline; absolute Unix time beyond 30 days,
    for locks' leases too), never before.
Cancellation and outages
    aiomcache returns a connection with an unread reply to its pool when a call is cancelled
    (aiomcache#489); later reads on it get other keys' data. And when memcached goes away its
    reply loop spins on end of file. The client used here closes a connection interrupted
    mid-call and reports end of file as a lost connection.

Batching
    Under load (``batching=True``, the default; see :mod:`~sanic_synchro_ctx.batching`),
    the reads and writes waiting for the next round trip go out in one exchange on one
    connection, in order: each run of reads merged into one multi-get, each write as its
    commands, and one read of the generation for the whole batch (sent again on the new
    generation if a clear moved it). gets/cas loops and locks go out on their own.

``keys()`` raises SynchroUnsupported: memcached cannot list keys.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

from ..batching import DEFAULT_MAX_BATCH, Batcher, Outcome, batch_limit
from ..checks import INT64_MAX, INT64_MIN, check_timeout
from ..errors import SynchroError, SynchroTypeError, SynchroUnsupported, SynchroValueError
from ..serializer import Serializer
from .base import DEFAULT_TIMEOUT, LOCK_MARK
from .network import NetworkInterface, bounded

__all__ = ["Memcache"]

T = TypeVar("T")

#: memcached's default item limit is 1 MiB including key and header: stay below it.
MEMCACHE_MAX_VALUE_SIZE = 1_000_000

_OFFSET = 1 << 62
_WRAP = 1 << 64
#: Counters ``incr`` may touch hold values of magnitude below this (stored below 2**63).
_NATIVE = 1 << 61
#: Larger steps go through gets/cas, so that ``incr`` can never leave the signed range.
_STEP = 1 << 32
#: How far past _NATIVE a counter of ours can be pushed by increments in flight at once.
_DRIFT = 1 << 50
_COUNTER = 1  # flags bit 0: the value is an offset-encoded counter
_EPOCH = 1_577_836_800  # flags bits 1-31: deadline, seconds since 2020-01-01 (0: none)
_MARK = b":"  # prefix of every non-counter value: memcached never reads it as a number
_THIRTY_DAYS = 30 * 86_400
_PAST = _THIRTY_DAYS + 1  # an absolute time in 1970: the item expires at once
_MAX_KEY = 250
_SAFE_NAMESPACE = re.compile(r"[A-Za-z0-9:%._/-]{1,64}")
_PLAIN = re.compile(r"[\x21-\x22\x24-\x7e]+")  # printable ASCII except '#'
_INTEGER = re.compile(rb"-?(?:0|[1-9][0-9]*)")


def _import_aiomcache() -> Any:
    try:
        import aiomcache
    except ImportError:
        raise ImportError(
            'Memcache needs aiomcache: pip install "sanic-synchro-ctx[memcache]"'
        ) from None
    return aiomcache


class _Item(NamedTuple):
    """A stored value with the flags aiomcache hands over (for flags other than 0)."""

    data: bytes
    flags: int


#: Part of a pipelined exchange: command text, and how many reply lines it gets (None: it is
#: a ``get``, answered by items).
_Segment = tuple[bytes, int | None]


class _Read(NamedTuple):
    """Read these keys (full names), with the generation."""

    keys: tuple[str, ...]


class _Write(NamedTuple):
    """Send the commands built for a generation; their reply lines, one each."""

    build: Callable[[bytes], list[bytes]]


_Op = _Read | _Write


class _Session(NamedTuple):
    """One loop's client and its batcher."""

    client: Any
    batcher: Batcher[_Op] | None


_client_class: Any = None


def _cancel_safe_client(module: Any) -> Any:
    """aiomcache's FlagClient, made safe to cancel and safe when the server goes away.

    aiomcache releases a connection to its pool after each call, and closes it only when its
    reader holds an exception, which it sets for an Exception but not for CancelledError
    (aiomcache#489): marking the reader on any interruption makes the pool close that
    connection instead of handing out one with an unread reply. And its reply loop reads
    lines until one ends with CRLF: at end of file ``readline()`` answers ``b""`` at once, for
    ever, and the event loop spins; here end of file is a lost connection. All of the
    client's I/O goes through these two methods.
    """
    global _client_class
    if _client_class is None:

        class SafeClient(module.FlagClient):  # type: ignore[misc]
            async def _execute_simple_command(self, conn: Any, raw_command: bytes) -> bytes:
                try:
                    conn.writer.write(raw_command)
                    await conn.writer.drain()
                    response = bytearray()
                    while not response.endswith(b"\r\n"):
                        line = await conn.reader.readline()
                        if not line:
                            raise ConnectionResetError("memcached closed the connection")
                        response += line
                except BaseException as exc:
                    _abandon(conn, exc)
                    raise
                return bytes(response[:-2])

            async def _multi_get(self, conn: Any, *keys: bytes, with_cas: bool = True) -> Any:
                try:
                    return await super()._multi_get(conn, *keys, with_cas=with_cas)
                except module.exceptions.ClientException as exc:
                    if conn.reader.at_eof():  # aiomcache reports end of file as "get failed"
                        lost = ConnectionResetError("memcached closed the connection")
                        _abandon(conn, lost)
                        raise lost from exc
                    raise
                except BaseException as exc:
                    _abandon(conn, exc)
                    raise

            async def exchange(
                self, commands: list[bytes], generation_key: bytes
            ) -> tuple[list[bytes], bytes | None]:
                """Send ``commands`` and ``get generation_key`` in one write; answer each
                command's reply line, and the generation token as the server then had it."""
                lines, found = await self.pipeline(
                    [
                        (b"".join(commands), len(commands)),
                        (b"get " + generation_key + b"\r\n", None),
                    ]
                )
                token = found.get(generation_key)
                return lines, None if token is None else token.data

            @module.client.acquire  # type: ignore[untyped-decorator]
            async def pipeline(self, conn: Any, segments: list[_Segment]) -> list[Any]:
                """Send the commands of every segment in one write; then read each one's
                replies in order: its reply lines, or for a ``get`` its items by key."""
                try:
                    conn.writer.write(b"".join(text for text, _ in segments))
                    await conn.writer.drain()
                    replies: list[Any] = []
                    for _, lines in segments:
                        if lines is None:
                            replies.append(await self._items(conn))
                        else:
                            replies.append([await _reply_line(conn) for _ in range(lines)])
                except BaseException as exc:
                    _abandon(conn, exc)
                    raise
                return replies

            @staticmethod
            async def _items(conn: Any) -> dict[bytes, _Item]:
                """The items of a ``get`` reply, by key."""
                found: dict[bytes, _Item] = {}
                while (line := await _reply_line(conn)) != b"END":
                    head = line.split()
                    if len(head) != 4 or head[0] != b"VALUE":
                        raise module.exceptions.ClientException("unexpected reply", line)
                    data = await conn.reader.readexactly(int(head[3]) + 2)
                    found[head[1]] = _Item(data[:-2], int(head[2]))
                return found

            @module.client.acquire  # type: ignore[untyped-decorator]
            async def gets_many(self, conn: Any, *keys: bytes) -> tuple[dict[bytes, Any], Any]:
                """Values and cas tokens of ``keys`` in one ``gets``."""
                found: tuple[dict[bytes, Any], Any] = await self._multi_get(
                    conn, *keys, with_cas=True
                )
                return found

        _client_class = SafeClient
    return _client_class


async def _reply_line(conn: Any) -> bytes:
    line: bytes = await conn.reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionResetError("memcached closed the connection")
    return line[:-2]


def _storage(
    verb: bytes, key: bytes, stored: bytes | _Item, exptime: int, cas: int | None = None
) -> bytes:
    """A storage command (set, add, cas) for memcached's text protocol."""
    data, flags = (stored.data, stored.flags) if isinstance(stored, _Item) else (stored, 0)
    head = b"%s %s %d %d %d" % (verb, key, flags, exptime, len(data))
    if cas is not None:
        head += b" %d" % cas
    return head + b"\r\n" + data + b"\r\n"


def _abandon(conn: Any, exc: BaseException) -> None:
    """Make aiomcache's pool close this connection when it is released."""
    if conn.reader.exception() is None:
        conn.reader.set_exception(ConnectionAbortedError("memcached call interrupted"))


@functools.lru_cache(maxsize=4096)
def _key_body(body: str, room: int) -> bytes:
    """How a key is written after its namespace head: as it is when it is plain printable
    ASCII without '#' and fits in ``room`` bytes, else '#' + its digest."""
    if len(body) <= room and _PLAIN.fullmatch(body):
        return body.encode("ascii")
    return ("#" + _digest(body)).encode("ascii")


def _encode(number: int) -> bytes:
    """A counter as memcached stores it: ``(number + 2**62) mod 2**64`` in decimal."""
    return str((number + _OFFSET) % _WRAP).encode("ascii")


def _decode(stored: int) -> int:
    """The signed 64-bit counter a stored unsigned number stands for."""
    number = stored - _OFFSET
    return number - _WRAP if number > INT64_MAX else number


def _digest(data: str) -> str:
    raw = hashlib.sha256(data.encode("utf-8", "surrogatepass")).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


async def _to_item(data: bytes, flags: int) -> _Item:
    return _Item(data, flags)


async def _from_item(item: _Item) -> tuple[bytes, int]:
    return item.data, item.flags


def _unpack(raw: bytes | _Item | None) -> tuple[bytes, int] | None:
    if raw is None:
        return None
    if isinstance(raw, _Item):
        return raw.data, raw.flags
    return raw, 0


class Memcache(NetworkInterface[_Session]):
    """The context in memcached, through ``aiomcache``."""

    ttl_resolution = 1.0
    lists_keys = False

    def __init__(
        self,
        host: Any = "127.0.0.1",
        port: int = 11211,
        pool_size: int = 4,
        *,
        prefix: str | None = None,
        serializer: Serializer | None = None,
        max_value_size: int = MEMCACHE_MAX_VALUE_SIZE,
        timeout: float | None = DEFAULT_TIMEOUT,
        batching: bool = True,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        module = _import_aiomcache()
        self._max_batch = batch_limit(batching, max_batch)
        self._timeout = check_timeout(timeout)
        self._module = module
        if isinstance(host, module.Client):
            pool = host._pool  # settings of the given client; each loop gets its own
            host, port, pool_size = pool._host, pool._port, pool._maxsize
            self._conn_args = dict(pool.conn_args)
        else:
            self._conn_args = {}
        if not isinstance(host, str):
            raise SynchroValueError("Memcache takes a host name or an aiomcache.Client")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise SynchroValueError("pool_size must be an int >= 1")
        self._host, self._port, self._pool_size = host, port, pool_size
        self._generation: bytes | None = None
        self._namespace_tag: str | None = None
        self.connection_errors = (OSError, EOFError, asyncio.TimeoutError)
        super().__init__(prefix=prefix, serializer=serializer, max_value_size=max_value_size)

    # -- sessions -------------------------------------------------------------------------

    async def _open(self) -> _Session:
        client = _cancel_safe_client(self._module)(
            self._host,
            self._port,
            pool_size=self._pool_size,
            conn_args=self._conn_args or None,
            get_flag_handler=_to_item,
            set_flag_handler=_from_item,
        )
        if self._max_batch is None:
            return _Session(client, None)
        batcher: Batcher[_Op] = Batcher(
            asyncio.get_running_loop(),
            functools.partial(self._send_one, client),
            functools.partial(self._send_many, client),
            self._max_batch,
        )
        return _Session(client, batcher)

    async def _shut(self, session: _Session) -> None:
        await session.client.close()

    def _rt(self, exchange: Awaitable[T]) -> Awaitable[T]:
        """One exchange with memcached, bounded by the timeout (aiomcache has none). An
        exchange interrupted half way closes its connection (see _cancel_safe_client)."""
        return bounded(exchange, self._timeout)

    # -- keys -----------------------------------------------------------------------------

    def _tag(self) -> str:
        tag = self._namespace_tag
        if tag is None:
            prefix = self._namespace()
            tag = prefix if _SAFE_NAMESPACE.fullmatch(prefix) else "#" + _digest(prefix)[:22]
            self._namespace_tag = tag
        return tag

    def _encode(self, head: str, body: str) -> bytes:
        return head.encode("ascii") + _key_body(body, _MAX_KEY - len(head))

    def _data_key(self, full: str, generation: bytes) -> bytes:
        body = full[len(self._namespace()) :]
        return self._encode(self._tag() + generation.decode("ascii") + ":", body)

    def _lock_name(self, full: str) -> bytes:
        body = full[len(LOCK_MARK) + len(self._namespace()) :]
        return self._encode(self._tag() + "!lock:", body)

    def _generation_key(self) -> bytes:
        return (self._tag() + "!gen").encode("ascii")

    # -- generations ----------------------------------------------------------------------

    async def _current_generation(self, client: Any, seen: bytes | None = None) -> bytes:
        """The generation token: ``seen`` if given (as just read), else read; created if
        missing (never set, or evicted: a fresh token then hides the old data for good)."""
        token = seen if seen is not None else await self._rt(client.get(self._generation_key()))
        while token is None:
            fresh = secrets.token_hex(8).encode("ascii")
            if await self._rt(client.add(self._generation_key(), fresh)):
                token = fresh
            else:
                token = await self._rt(client.get(self._generation_key()))
        self._generation = token
        return token

    def _reads(self, session: _Session, *keys: str) -> Awaitable[list[tuple[bytes, int] | None]]:
        """Data items of ``keys`` (None: missing), read together with the generation token;
        under load, merged with concurrent reads into one multi-get."""
        return self._run(session, _Read(keys))

    def _write(self, session: _Session, build: Callable[[bytes], list[bytes]]) -> Awaitable[Any]:
        """The reply lines of the commands ``build(generation)``, sent together with a read
        of the generation; under load, in one exchange with concurrent operations."""
        return self._run(session, _Write(build))

    def _run(self, session: _Session, op: _Op) -> Awaitable[Any]:
        """Send ``op``: through the session's batcher when batching is on."""
        if session.batcher is None:
            return self._send_one(session.client, op)
        return session.batcher.submit(op)

    def _send_one(self, client: Any, op: _Op) -> Awaitable[Any]:
        if isinstance(op, _Read):
            return self._read_now(client, op.keys)
        return self._write_now(client, op.build)

    async def _read_now(self, client: Any, keys: tuple[str, ...]) -> list[tuple[bytes, int] | None]:
        """Data items of ``keys`` in one multi-get, together with the generation token."""
        generation = self._generation or await self._current_generation(client)
        while True:
            names = [self._data_key(key, generation) for key in keys]
            found = await self._rt(client.multi_get(self._generation_key(), *names))
            token = found[0]
            if token == generation:
                return [_unpack(raw) for raw in found[1:]]
            generation = await self._current_generation(client, token)

    async def _write_now(self, client: Any, build: Callable[[bytes], list[bytes]]) -> list[bytes]:
        """Send ``build(generation)`` (raw commands) together with a read of the generation,
        in one exchange; when a clear had moved the generation, send them again on the new
        one. Answers the commands' reply lines. (The write is ordered before the check: an
        unchanged generation means it landed before any clear.)"""
        generation = self._generation or await self._current_generation(client)
        while True:
            replies, token = await self._rt(
                client.exchange(build(generation), self._generation_key())
            )
            if token == generation:
                return list(replies)
            generation = await self._current_generation(client, token)

    async def _send_many(self, client: Any, ops: list[_Op]) -> list[Outcome]:
        """Several operations in one exchange, in order: writes as their commands, runs of
        reads merged into one multi-get, and the generation read last (with the last run of
        reads if the batch ends with one). If a clear moved the generation, all of it is
        sent again on the new one, as for a single operation."""
        generation = self._generation or await self._current_generation(client)
        generation_key = self._generation_key()
        while True:
            segments: list[_Segment] = []
            plan: list[tuple[int, list[bytes]]] = []  # per op: its segment, and its names
            run: dict[bytes, None] | None = None  # names of the get being gathered
            for op in ops:
                if isinstance(op, _Read):
                    names = [self._data_key(key, generation) for key in op.keys]
                    if run is None:
                        run = {}
                        segments.append((b"", None))
                    run.update(dict.fromkeys(names))
                    plan.append((len(segments) - 1, names))
                    continue
                if run is not None:
                    segments[-1] = (b"get " + b" ".join(run) + b"\r\n", None)
                    run = None
                commands = op.build(generation)
                segments.append((b"".join(commands), len(commands)))
                plan.append((len(segments) - 1, []))
            if run is not None:  # the generation goes with the last reads
                segments[-1] = (b"get " + b" ".join([generation_key, *run]) + b"\r\n", None)
            else:
                segments.append((b"get " + generation_key + b"\r\n", None))
            replies = await self._rt(client.pipeline(segments))
            token = replies[-1].get(generation_key)
            if token is not None:
                token = token.data
            if token != generation:
                generation = await self._current_generation(client, token)
                continue
            outcomes: list[Outcome] = []
            for index, names in plan:
                reply = replies[index]
                if names:
                    outcomes.append((True, [_unpack(reply.get(name)) for name in names]))
                else:
                    outcomes.append((True, reply))
            return outcomes

    # -- values and expiry ---------------------------------------------------------------

    @staticmethod
    def _deadline(ttl: float | None) -> int:
        """Deadline flags for ``ttl``: the time until which the value must live, rounded up
        to a whole second (0: no expiry)."""
        if ttl is None:
            return 0
        return (math.ceil(time.time() + ttl) - _EPOCH) << 1

    @staticmethod
    def _exptime(deadline: int) -> int:
        """memcached's exptime for deadline flags, such that memcached removes the item in
        the two seconds after the deadline, never before it.

        memcached's clock ticks once a second and lags real time by up to a second: a
        relative exptime R removes an item between R - 1 and R seconds after it was
        written, so R is one second beyond the deadline. Beyond 30 days an exptime is
        absolute Unix time, read against memcached's own second (up to a second off
        either way): two seconds beyond the deadline."""
        if not deadline >> 1:
            return 0
        at = (deadline >> 1) + _EPOCH
        relative = math.ceil(at - time.time()) + 1
        return max(relative, 1) if relative <= _THIRTY_DAYS else at + 2

    @staticmethod
    def _left(flags: int) -> float | None:
        """Seconds to live from an item's flags (None: no expiry; 0 once the deadline
        passed and memcached has yet to remove the item)."""
        deadline = flags >> 1
        return None if deadline == 0 else max(deadline + _EPOCH - time.time(), 0.0)

    @staticmethod
    def _store(value: bytes, deadline: int) -> bytes | _Item:
        """What to store for serialized ``value``: integers of magnitude below _NATIVE
        become counters that ``incr`` can add to; everything else is marked."""
        if _INTEGER.fullmatch(value) and -_NATIVE < int(value) < _NATIVE:
            return _Item(_encode(int(value)), _COUNTER | deadline)
        data = _MARK + value
        return _Item(data, deadline) if deadline else data

    @staticmethod
    def _value(item: tuple[bytes, int]) -> bytes:
        """The serialized value of a stored item."""
        data, flags = item
        if flags & _COUNTER:
            return str(_decode(int(data))).encode("ascii")
        if not data.startswith(_MARK):
            raise SynchroError("memcached holds an item this interface did not write")
        return data[1:]

    # -- primitives -----------------------------------------------------------------------

    async def _get(self, key: str) -> bytes | None:
        session = self._cached() or await self._session()
        (item,) = await self._reads(session, key)
        return None if item is None else self._value(item)

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        session = self._cached() or await self._session()
        items = await self._reads(session, *keys)
        return [None if item is None else self._value(item) for item in items]

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        session = self._cached() or await self._session()
        deadline = self._deadline(ttl)
        stored, exptime = self._store(value, deadline), self._exptime(deadline)
        (reply,) = await self._write(
            session, lambda g: [_storage(b"set", self._data_key(key, g), stored, exptime)]
        )
        self._expect(reply, b"STORED")

    def _expect(self, reply: bytes, *allowed: bytes) -> bytes:
        if reply not in allowed:
            raise self._module.exceptions.ClientException("memcached answered", reply)
        return reply

    async def _set_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> None:
        # memcached has no multi-set: each key is written on its own, in one exchange.
        session = self._cached() or await self._session()
        deadline = self._deadline(ttl)
        exptime = self._exptime(deadline)
        stored = [(key, self._store(value, deadline)) for key, value in items]
        replies = await self._write(
            session,
            lambda g: [_storage(b"set", self._data_key(k, g), v, exptime) for k, v in stored],
        )
        for reply in replies:
            self._expect(reply, b"STORED")

    async def _add_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> list[bytes]:
        return list(await asyncio.gather(*(self._add_one(key, value, ttl) for key, value in items)))

    async def _add_one(self, key: str, value: bytes, ttl: float | None) -> bytes:
        """Set ``key`` if missing; the serialized value it now holds."""
        session = self._cached() or await self._session()
        deadline = self._deadline(ttl)
        stored, exptime = self._store(value, deadline), self._exptime(deadline)
        while True:
            (reply,) = await self._write(
                session, lambda g: [_storage(b"add", self._data_key(key, g), stored, exptime)]
            )
            if self._expect(reply, b"STORED", b"NOT_STORED") == b"STORED":
                return value
            (item,) = await self._reads(session, key)
            if item is not None:
                return self._value(item)
            # it expired between the add and the read: try again

    async def _delete(self, keys: list[str]) -> int:
        session = self._cached() or await self._session()
        names = list(dict.fromkeys(keys))
        replies = await self._write(
            session, lambda g: [b"delete %s\r\n" % self._data_key(k, g) for k in names]
        )
        return sum(self._expect(r, b"DELETED", b"NOT_FOUND") == b"DELETED" for r in replies)

    async def _increment(self, key: str, by: int) -> int:
        """``incr`` for counters of ours (one exchange), gets/cas for everything else.

        Only counters of magnitude below _NATIVE are stored in a form ``incr`` reads as a
        number, and only steps below _STEP use it: a sum then stays far inside the signed
        range, so an overflow can never be applied by memcached (and seen by anyone). A sum
        past _NATIVE is moved to the marked form right away; the next increment of it, and
        every big step, is exact arithmetic by gets/cas that refuses an overflow before it
        writes anything.
        """
        if not -_STEP < by < _STEP:
            return await self._cas_increment(key, by)
        session = self._cached() or await self._session()
        step = by % _WRAP  # a negative step is a modular increment
        counter = _Item(_encode(by), _COUNTER)
        while True:
            (reply,) = await self._write(
                session, lambda g: [b"incr %s %d\r\n" % (self._data_key(key, g), step)]
            )
            if reply.isdigit():
                result = _decode(int(reply))
                if -_NATIVE < result < _NATIVE:
                    return result
                if -_NATIVE - _DRIFT < result < _NATIVE + _DRIFT:
                    await self._cas_increment(key, 0)  # leaves incr's range: mark it
                    return result
                # A number some other client wrote (ours are never this far out): undo the
                # step, which nothing of ours could have read, and refuse.
                await asyncio.shield(
                    self._write(
                        session,
                        lambda g: [b"incr %s %d\r\n" % (self._data_key(key, g), _WRAP - step)],
                    )
                )
                raise SynchroTypeError("the stored value was not written by this interface")
            if reply == b"NOT_FOUND":
                (reply,) = await self._write(
                    session, lambda g: [_storage(b"add", self._data_key(key, g), counter, 0)]
                )
                if self._expect(reply, b"STORED", b"NOT_STORED") == b"STORED":
                    return by
                continue  # another client created it first: increment that one
            # CLIENT_ERROR: not a number to memcached (a marked value): exact arithmetic
            return await self._cas_increment(key, by)

    async def _cas_increment(self, key: str, by: int) -> int:
        """An exact increment by gets/cas; ``by=0`` moves a counter past _NATIVE out of
        ``incr``'s reach. Refuses a non-integer or an overflow before writing anything."""

        def choose(item: tuple[bytes, int] | None) -> tuple[Any, int, int]:
            if item is None:
                return self._store(str(by).encode("ascii"), 0), 0, by
            value = self._value(item)
            if not _INTEGER.fullmatch(value):
                raise SynchroTypeError("the stored value is not an integer")
            result = int(value) + by
            if not INT64_MIN <= result <= INT64_MAX:
                raise SynchroValueError("the result leaves the signed 64-bit range")
            deadline = item[1] & ~_COUNTER  # keep the current expiry
            return self._store(str(result).encode("ascii"), deadline), deadline, result

        result: int = await self._swap(key, choose)
        return result

    async def _swap(self, key: str, choose: Any) -> Any:
        """A gets/cas loop, two exchanges when nothing interferes. ``choose(item)`` answers
        (stored, deadline, result), or (None, 0, result) to leave the item alone."""
        client = (self._cached() or await self._session()).client
        generation_key = self._generation_key()
        while True:
            generation = self._generation or await self._current_generation(client)
            name = self._data_key(key, generation)
            values, tokens = await self._rt(client.gets_many(generation_key, name))
            token = values.get(generation_key)
            if token != generation:
                await self._current_generation(client, token)
                continue
            raw = values.get(name)
            new, deadline, result = choose(_unpack(raw))
            if new is None:
                return result
            exptime = self._exptime(deadline)
            if raw is None:
                command = _storage(b"add", name, new, exptime)
            else:
                command = _storage(b"cas", name, new, exptime, tokens[name])
            (reply,), token = await self._rt(client.exchange([command], generation_key))
            if token != generation:
                await self._current_generation(client, token)
            elif self._expect(reply, b"STORED", b"EXISTS", b"NOT_FOUND", b"NOT_STORED") == (
                b"STORED"
            ):
                return result

    async def _replace(self, key: str, value: bytes) -> bytes | None:
        def choose(item: tuple[bytes, int] | None) -> tuple[Any, int, bytes | None]:
            if item is None:
                return self._store(value, 0), 0, None
            deadline = item[1] & ~_COUNTER  # keep the current expiry
            return self._store(value, deadline), deadline, self._value(item)

        old: bytes | None = await self._swap(key, choose)
        return old

    async def _compare_and_set(
        self, key: str, expected: bytes, new: bytes, ttl: float | None
    ) -> bool:
        def choose(item: tuple[bytes, int] | None) -> tuple[Any, int, bool]:
            if item is None or self._value(item) != expected:
                return None, 0, False
            deadline = self._deadline(ttl)
            return self._store(new, deadline), deadline, True

        swapped: bool = await self._swap(key, choose)
        return swapped

    async def _expire(self, key: str, ttl: float | None) -> bool:
        def choose(item: tuple[bytes, int] | None) -> tuple[Any, int, bool]:
            if item is None:
                return None, 0, False
            deadline = self._deadline(ttl)
            return self._store(self._value(item), deadline), deadline, True

        existed: bool = await self._swap(key, choose)
        return existed

    async def _ttl(self, key: str) -> float | None:
        session = self._cached() or await self._session()
        (item,) = await self._reads(session, key)
        return None if item is None else self._left(item[1])

    async def _keys(self, prefix: str) -> list[str]:
        raise SynchroUnsupported(
            "memcached cannot list its keys, so Memcache.keys() is not available"
        )

    async def _clear(self, prefix: str) -> None:
        client = (self._cached() or await self._session()).client
        fresh = secrets.token_hex(8).encode("ascii")
        await self._rt(client.set(self._generation_key(), fresh))
        self._generation = fresh

    async def _lock_acquire(self, key: str, token: str, ttl: float) -> str | None:
        client = (self._cached() or await self._session()).client
        name = self._lock_name(key)
        owner = _MARK + token.encode("utf-8", "surrogatepass")
        while True:
            # a lease must never end early: whole seconds, one more for memcached's clock
            if await self._rt(client.add(name, owner, self._exptime(self._deadline(ttl)))):
                return None
            holder = await self._rt(client.get(name))
            if holder is not None:
                data = holder.data if isinstance(holder, _Item) else holder
                return data[1:].decode("utf-8", "surrogatepass")
            # released between the add and the get: try again

    async def _lock_release(self, key: str, token: str) -> bool:
        client = (self._cached() or await self._session()).client
        name = self._lock_name(key)
        raw, cas = await self._rt(client.gets(name))
        if raw is None or raw != _MARK + token.encode("utf-8", "surrogatepass"):
            return False
        # A conditional delete: replace our own lease (cas) by an item already expired.
        return bool(await self._rt(client.cas(name, b"", cas, _PAST)))

    def __repr__(self) -> str:
        return f"Memcache({self._host}:{self._port})"
