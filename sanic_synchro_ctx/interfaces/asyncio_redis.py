"""AsyncioRedis: Redis through the ``asyncio_redis`` client.

Each event loop gets its own ``asyncio_redis.Pool`` (``poolsize`` connections, bytes
encoder); a pool that lost all its connections is replaced on the next call. Operations
are the same one-round-trip commands and Lua scripts as AIORedis, and the data layout is
the same, so the two interfaces read each other's keys. ``asyncio_redis`` reports any
script error as ScriptKilledError, including the NOSCRIPT answer of a Redis that
restarted and forgot its scripts: after such an error, ``SCRIPT EXISTS`` tells whether the
script was missing (it never ran: it is loaded and sent again) or ran and failed (it is not
sent again). Replies to cancelled callers are dropped by a protocol of our own (the
client's would kill the connection's reader on an error reply, see :class:`_Protocol`);
its multi-bulk replies are not safe to cancel either: MGET and SCAN run shielded.
``timeout`` (seconds, default 5) bounds each call, since ``asyncio_redis`` never times out;
``connect_timeout`` (default 5 s) bounds opening a pool.

The async front end batches (``batching=True``, the default): under load, the commands
waiting for the next round trip go out together on one connection of the pool, written in
one send and answered in order (a non-transactional pipeline: each caller gets its own
reply or error), at most ``max_batch`` at a time (see :mod:`~sanic_synchro_ctx.batching`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ..batching import DEFAULT_MAX_BATCH, Batcher, Outcome, batch_limit
from ..checks import check_timeout
from ..errors import SynchroValueError
from ..serializer import Serializer
from .base import DEFAULT_MAX_VALUE_SIZE, DEFAULT_TIMEOUT
from .network import NetworkInterface
from .redisscripts import (
    SCRIPTS,
    decode_key,
    encode_key,
    increment_error,
    match_pattern,
    milliseconds,
    seconds_left,
    split_netstrings,
)

__all__ = ["AsyncioRedis"]

_CHUNK = 500
T = TypeVar("T")


def _import_asyncio_redis() -> Any:
    try:
        import asyncio_redis
    except ImportError:
        raise ImportError(
            'AsyncioRedis needs asyncio_redis: pip install "sanic-synchro-ctx[asyncio_redis]"'
        ) from None
    return asyncio_redis


_protocol_class: Any = None


def _protocol(module: Any) -> Any:
    """asyncio_redis's protocol, made safe for cancelled callers.

    Its reader hands each reply to the oldest waiting future, and skips a cancelled one for
    a value but not for an error reply: ``set_exception`` on a cancelled future raises
    InvalidStateError, the connection's reader task dies, and the pool still counts the
    connection as alive: every later command on it waits for ever (the issue's 40 of 40
    hung reads after cancelled increments of a string). Checked against asyncio_redis 0.16.0
    (``RedisProtocol._push_answer``, passed as the documented ``protocol_class``).
    """
    global _protocol_class
    if _protocol_class is None:
        base = module.RedisProtocol
        if not callable(getattr(base, "_push_answer", None)):
            raise ImportError("asyncio_redis changed: RedisProtocol._push_answer is gone")

        class Protocol(base):  # type: ignore[misc, valid-type]
            def _push_answer(self, answer: Any) -> None:
                if self._queue and self._queue[0].done():
                    self._queue.popleft()  # its caller was cancelled: drop the reply
                    return
                super()._push_answer(answer)

        _protocol_class = Protocol
    return _protocol_class


def _whole(reading: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """Run a multi-bulk read (MGET, SCAN) to its end even if the caller is cancelled.

    asyncio_redis hands a multi-bulk reply over as one future per item; cancelling the
    caller while it consumes them cancels those futures, and when the data then arrives the
    connection's reader task dies on set_result() of a cancelled future: that connection
    never answers again. Shielded, the read always completes and only the caller stops.
    """
    return asyncio.shield(reading)


def _bounded(awaitable: Awaitable[T], timeout: float | None) -> Awaitable[T]:
    """``awaitable``, bounded by ``timeout`` seconds when one is set."""
    if timeout is None:
        return awaitable
    return asyncio.wait_for(awaitable, timeout)


def _evaluation(sha: str, keys: list[bytes], args: list[bytes]) -> _Command:
    """The command that runs a loaded script and answers its return value."""

    async def evaluate(redis: Any) -> Any:
        reply = await redis.evalsha(sha, keys, args)
        return await reply.return_value()

    return evaluate


def _script_exists(sha: str, redis: Any) -> Coroutine[Any, Any, Any]:
    coroutine: Coroutine[Any, Any, Any] = redis.script_exists([sha])
    return coroutine


def _arg(value: bytes | str | int) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")


#: One command: given a pool or one connection's protocol, the coroutine that runs it.
_Command = Callable[[Any], Coroutine[Any, Any, Any]]
#: A command, and whether it reads a multi-bulk reply (then it must not be interrupted).
_Op = tuple[_Command, bool]


class _Corked:
    """Stands in for a connection's transport while a batch is issued: keeps the writes,
    so that the whole batch goes out in one send."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)


class _Session:
    """One loop's pool, its loaded scripts and its batcher."""

    __slots__ = ("batcher", "pool", "scripts", "timeout")

    def __init__(self, pool: Any, max_batch: int | None, timeout: float | None) -> None:
        self.pool = pool
        self.scripts: dict[str, Any] = {}
        self.timeout = timeout
        self.batcher: Batcher[_Op] | None = None
        if max_batch is not None:
            self.batcher = Batcher(
                asyncio.get_running_loop(), self._send_one, self._send_many, max_batch
            )

    def run(self, command: _Command, whole: bool = False) -> Awaitable[Any]:
        """Issue ``command`` (``whole``: it reads a multi-bulk reply), bounded by the
        timeout; batched with concurrent ones when batching is on."""
        op = (command, whole)
        if self.batcher is None:
            return _bounded(self._send_one(op), self.timeout)
        return _bounded(self.batcher.submit(op), self.timeout)

    def _send_one(self, op: _Op) -> Awaitable[Any]:
        command, whole = op
        return _whole(command(self.pool)) if whole else command(self.pool)

    async def _send_many(self, ops: list[_Op]) -> list[Outcome]:
        """Issue ``ops`` back to back on one connection, in one send; their outcomes."""
        protocol = self.pool.protocol  # a connected one, as the pool hands out for a command
        started = _issue(protocol, [command for command, _ in ops])
        if self.timeout is None:
            return await _answers(started)
        # Shielded: a multi-bulk read interrupted half way breaks its connection for good.
        return await asyncio.wait_for(asyncio.shield(_answers(started)), self.timeout)


#: A command issued in a batch: its coroutine and what it waits for, or its outcome.
_Started = tuple[Coroutine[Any, Any, Any] | None, Any]


def _issue(protocol: Any, commands: list[_Command]) -> list[_Started]:
    """Start each command on ``protocol`` up to its first wait (asyncio_redis writes a
    command before it waits for its reply), with the writes kept and sent as one."""
    transport = protocol.transport
    corked = _Corked()
    protocol.transport = corked
    started: list[_Started] = []
    try:
        for command in commands:
            coroutine = command(protocol)
            try:
                started.append((coroutine, coroutine.send(None)))
            except StopIteration as stop:
                started.append((None, (True, stop.value)))
            except Exception as exc:
                started.append((None, (False, exc)))
    finally:
        protocol.transport = transport
        if corked.parts and transport is not None and not transport.is_closing():
            transport.write(b"".join(corked.parts))
    return started


async def _answers(started: list[_Started]) -> list[Outcome]:
    """Drive each started command to its end, in order; each one's outcome."""
    outcomes: list[Outcome] = []
    pending = [coroutine for coroutine, _ in started if coroutine is not None]
    try:
        for coroutine, waiting in started:
            if coroutine is None:
                outcomes.append(waiting)
                continue
            try:
                while True:
                    if waiting is None:  # a bare yield: let the loop run once
                        await asyncio.sleep(0)
                    elif not waiting.done():
                        # Take over the wait from the command, as a Task does for what its
                        # coroutine yields (else this second await counts as misuse).
                        waiting._asyncio_future_blocking = False
                        with contextlib.suppress(Exception):  # the command receives it below
                            await waiting
                    waiting = coroutine.send(None)
            except StopIteration as stop:
                outcomes.append((True, stop.value))
            except Exception as exc:
                outcomes.append((False, exc))
    finally:
        for coroutine in pending:
            coroutine.close()  # those not finished (this batch was abandoned)
    return outcomes


class AsyncioRedis(NetworkInterface[_Session]):
    """The context in Redis, through ``asyncio_redis``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        password: str | None = None,
        poolsize: int = 4,
        *,
        prefix: str | None = None,
        serializer: Serializer | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        timeout: float | None = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_TIMEOUT,
        batching: bool = True,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        module = _import_asyncio_redis()
        self._max_batch = batch_limit(batching, max_batch)
        if isinstance(poolsize, bool) or not isinstance(poolsize, int) or poolsize < 1:
            raise SynchroValueError("poolsize must be an int >= 1")
        self._module = module
        self._options = {"host": host, "port": port, "db": db, "password": password}
        self._poolsize = poolsize
        self._timeout = check_timeout(timeout)
        self._connect_timeout = check_timeout(connect_timeout)
        errors = module.exceptions
        self.connection_errors = (errors.NotConnectedError, errors.TimeoutError, OSError)
        super().__init__(prefix=prefix, serializer=serializer, max_value_size=max_value_size)

    # -- sessions -------------------------------------------------------------------------

    async def _open(self) -> _Session:
        creating = self._module.Pool.create(
            **self._options,
            encoder=self._module.encoders.BytesEncoder(),
            poolsize=self._poolsize,
            auto_reconnect=False,  # reconnection is ours: see _live
            protocol_class=_protocol(self._module),
        )
        try:
            pool = await asyncio.wait_for(creating, self._connect_timeout)
        except asyncio.TimeoutError:
            raise ConnectionRefusedError(
                f"no Redis at {self._options['host']}:{self._options['port']} "
                f"within {self._connect_timeout} s"
            ) from None
        return _Session(pool, self._max_batch, self._timeout)

    async def _shut(self, session: _Session) -> None:
        session.pool.close()
        # Each connection's reader task ends once its transport reports the loss, a pass or
        # two of the loop later; a bridge loop may not run again, so let them end now.
        for _ in range(3):
            await asyncio.sleep(0)

    async def _live(self) -> _Session:
        """This loop's session, with a new pool if none of its connections is connected.

        asyncio_redis reconnects in background tasks, which only run while their loop
        runs; the blocking front end's loop runs only during calls. So pools here do not
        reconnect by themselves: a pool whose connections were all lost is replaced on the
        next call (which fails at once while the server is down).
        """
        session = self._cached() or await self._session()
        if session.pool.connections_connected == 0:
            await self._close_current()
            session = await self._session()
        return session

    async def _script(self, name: str, keys: list[bytes], args: list[bytes | str | int]) -> Any:
        session = await self._live()
        encoded = [_arg(arg) for arg in args]
        for attempt in (1, 2):
            script: Any = session.scripts.get(name)
            if script is None:
                script = await _bounded(session.pool.register_script(SCRIPTS[name]), self._timeout)
                session.scripts[name] = script
            try:
                return await session.run(_evaluation(script.sha, keys, encoded))
            except self._module.exceptions.ScriptKilledError:
                # Any error reply to EVALSHA comes as ScriptKilledError. Send the script
                # again only if Redis did not have it (NOSCRIPT: it never ran).
                session.scripts.pop(name, None)
                sha = script.sha
                exists = await session.run(functools.partial(_script_exists, sha))
                if attempt == 2 or exists[0]:
                    raise
        raise AssertionError("unreachable")

    # -- primitives -----------------------------------------------------------------------

    async def _get(self, key: str) -> bytes | None:
        session = await self._live()
        raw = encode_key(key)
        value: bytes | None = await session.run(lambda redis: redis.get(raw))
        return value

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        session = await self._live()
        raw = [encode_key(key) for key in keys]
        values: list[bytes | None] = await session.run(
            lambda redis: redis.mget_aslist(raw), whole=True
        )
        return values

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        session = await self._live()
        px = None if ttl is None else milliseconds(ttl)
        raw = encode_key(key)
        await session.run(lambda redis: redis.set(raw, value, pexpire=px))

    async def _set_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> None:
        px = "" if ttl is None else milliseconds(ttl)
        keys = [encode_key(key) for key, _ in items]
        await self._script("set_many", keys, [px, *(value for _, value in items)])

    async def _add_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> list[bytes]:
        px = "" if ttl is None else milliseconds(ttl)
        keys = [encode_key(key) for key, _ in items]
        stored = await self._script("add_many", keys, [px, *(value for _, value in items)])
        return split_netstrings(stored)

    async def _delete(self, keys: list[str]) -> int:
        session = await self._live()
        raw = list({encode_key(key) for key in keys})
        deleted: int = await session.run(lambda redis: redis.delete(raw))
        return deleted

    async def _increment(self, key: str, by: int) -> int:
        session = await self._live()
        raw = encode_key(key)
        try:
            value: int = await session.run(lambda redis: redis.incrby(raw, by))
        except self._module.exceptions.ErrorReply:
            # INCRBY refused and left the value as it was; tell the caller why.
            raise increment_error(await session.run(lambda redis: redis.get(raw))) from None
        return value

    async def _replace(self, key: str, value: bytes) -> bytes | None:
        old: bytes | None = await self._script("replace", [encode_key(key)], [value])
        return old

    async def _compare_and_set(
        self, key: str, expected: bytes, new: bytes, ttl: float | None
    ) -> bool:
        px = "" if ttl is None else milliseconds(ttl)
        return bool(await self._script("compare_and_set", [encode_key(key)], [expected, new, px]))

    async def _expire(self, key: str, ttl: float | None) -> bool:
        if ttl is None:
            return bool(await self._script("persist", [encode_key(key)], []))
        session = await self._live()
        raw, ms = encode_key(key), milliseconds(ttl)
        return bool(await session.run(lambda redis: redis.pexpire(raw, ms)))

    async def _ttl(self, key: str) -> float | None:
        session = await self._live()
        raw = encode_key(key)
        return seconds_left(await session.run(lambda redis: redis.pttl(raw)))

    async def _scan(self, prefix: str) -> list[bytes]:
        pool = (await self._live()).pool

        async def fetch() -> list[bytes]:
            cursor = await pool.scan(match=match_pattern(prefix))
            found: list[bytes] = await cursor.fetchall()
            return found

        found: list[bytes] = await _bounded(_whole(fetch()), self._timeout)
        return found

    async def _keys(self, prefix: str) -> list[str]:
        return [decode_key(raw) for raw in await self._scan(prefix)]

    async def _clear(self, prefix: str) -> None:
        found = await self._scan(prefix)
        pool = (await self._live()).pool
        for start in range(0, len(found), _CHUNK):
            await _bounded(pool.delete(found[start : start + _CHUNK]), self._timeout)

    async def _lock_acquire(self, key: str, token: str, ttl: float) -> str | None:
        holder = await self._script("lock_acquire", [encode_key(key)], [token, milliseconds(ttl)])
        return None if holder is None else decode_key(holder)

    async def _lock_release(self, key: str, token: str) -> bool:
        return bool(await self._script("lock_release", [encode_key(key)], [token]))

    def __repr__(self) -> str:
        return "AsyncioRedis({host}:{port}/{db})".format(**self._options)
