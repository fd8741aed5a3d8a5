"""AsyncioRedis: Redis through the ``asyncio_redis`` client.

Each event loop gets its own ``asyncio_redis.Pool`` (``poolsize`` connections, bytes
encoder); a pool that lost all its connections is replaced on the next call. Operations
are the same one-round-trip commands and Lua scripts as AIORedis, and the data layout is
the same, so the two interfaces read each other's keys. ``asyncio_redis`` reports any
script error as ScriptKilledError, including the NOSCRIPT answer of a Redis that
restarted and forgot its scripts: a script call that fails that way is reloaded and
retried once. Its multi-bulk replies are not safe to cancel (a
connection's reader dies and it never answers again): MGET and SCAN run shielded.
``timeout`` (seconds, default None) bounds each call; ``asyncio_redis`` never times out.
``connect_timeout`` (default 5 s) bounds opening a pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from ..checks import check_timeout
from ..errors import SynchroValueError
from ..serializer import Serializer
from .base import DEFAULT_MAX_VALUE_SIZE
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


def _whole(reading: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """Run a multi-bulk read (MGET, SCAN) to its end even if the caller is cancelled.

    asyncio_redis hands a multi-bulk reply over as one future per item; cancelling the
    caller while it consumes them cancels those futures, and when the data then arrives the
    connection's reader task dies on set_result() of a cancelled future: that connection
    never answers again. Shielded, the read always completes and only the caller stops.
    """
    return asyncio.shield(reading)


def _arg(value: bytes | str | int) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")


class _Session:
    """One loop's pool and its loaded scripts."""

    __slots__ = ("pool", "scripts")

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.scripts: dict[str, Any] = {}


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
        timeout: float | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        module = _import_asyncio_redis()
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
        )
        try:
            pool = await asyncio.wait_for(creating, self._connect_timeout)
        except asyncio.TimeoutError:
            raise ConnectionRefusedError(
                f"no Redis at {self._options['host']}:{self._options['port']} "
                f"within {self._connect_timeout} s"
            ) from None
        return _Session(pool)

    async def _shut(self, session: _Session) -> None:
        session.pool.close()

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

    async def _pool(self) -> Any:
        return (await self._live()).pool

    async def _call(self, command: Any) -> Any:
        """Await one command, bounded by ``timeout`` when one is set."""
        if self._timeout is None:
            return await command
        return await asyncio.wait_for(command, self._timeout)

    async def _script(self, name: str, keys: list[bytes], args: list[bytes | str | int]) -> Any:
        session = await self._live()
        encoded = [_arg(arg) for arg in args]
        for attempt in (1, 2):
            script = session.scripts.get(name)
            if script is None:
                script = await self._call(session.pool.register_script(SCRIPTS[name]))
                session.scripts[name] = script
            try:
                reply = await self._call(script.run(keys=keys, args=encoded))
            except self._module.exceptions.ScriptKilledError:
                if attempt == 2:
                    raise
                session.scripts.pop(name, None)  # a restarted Redis forgot it: load again
                continue
            return await reply.return_value()
        raise AssertionError("unreachable")

    # -- primitives -----------------------------------------------------------------------

    async def _get(self, key: str) -> bytes | None:
        pool = await self._pool()
        value: bytes | None = await self._call(pool.get(encode_key(key)))
        return value

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        pool = await self._pool()

        async def fetch() -> list[bytes | None]:
            reply = await pool.mget([encode_key(key) for key in keys])
            values: list[bytes | None] = await reply.aslist()
            return values

        values: list[bytes | None] = await self._call(_whole(fetch()))
        return values

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        pool = await self._pool()
        px = None if ttl is None else milliseconds(ttl)
        await self._call(pool.set(encode_key(key), value, pexpire=px))

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
        pool = await self._pool()
        deleted: int = await self._call(pool.delete(list({encode_key(key) for key in keys})))
        return deleted

    async def _increment(self, key: str, by: int) -> int:
        pool = await self._pool()
        raw = encode_key(key)
        try:
            value: int = await self._call(pool.incrby(raw, by))
        except self._module.exceptions.ErrorReply:
            # INCRBY refused and left the value as it was; tell the caller why.
            raise increment_error(await self._call(pool.get(raw))) from None
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
        pool = await self._pool()
        return bool(await self._call(pool.pexpire(encode_key(key), milliseconds(ttl))))

    async def _ttl(self, key: str) -> float | None:
        pool = await self._pool()
        return seconds_left(await self._call(pool.pttl(encode_key(key))))

    async def _scan(self, prefix: str) -> list[bytes]:
        pool = await self._pool()

        async def fetch() -> list[bytes]:
            cursor = await pool.scan(match=match_pattern(prefix))
            found: list[bytes] = await cursor.fetchall()
            return found

        found: list[bytes] = await self._call(_whole(fetch()))
        return found

    async def _keys(self, prefix: str) -> list[str]:
        return [decode_key(raw) for raw in await self._scan(prefix)]

    async def _clear(self, prefix: str) -> None:
        found = await self._scan(prefix)
        pool = await self._pool()
        for start in range(0, len(found), _CHUNK):
            await self._call(pool.delete(found[start : start + _CHUNK]))

    async def _lock_acquire(self, key: str, token: str, ttl: float) -> str | None:
        holder = await self._script("lock_acquire", [encode_key(key)], [token, milliseconds(ttl)])
        return None if holder is None else decode_key(holder)

    async def _lock_release(self, key: str, token: str) -> bool:
        return bool(await self._script("lock_release", [encode_key(key)], [token]))

    def __repr__(self) -> str:
        return "AsyncioRedis({host}:{port}/{db})".format(**self._options)
