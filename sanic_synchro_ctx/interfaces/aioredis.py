"""AIORedis: Redis through ``redis.asyncio`` (the aioredis-2 API, now part of redis-py).

``AIORedis(client)`` takes a ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster``;
``AIORedis.from_url(url, **kwargs)`` builds one. Operations run on clients built from the
given client's settings, one per event loop (a client belongs to one loop), with bytes
responses and retries off: redis-py would send a command that timed out again, and an
increment still queued in a stalled server would then be applied twice. A timeout raises
SynchroConnectionError, whose effect is unknown (the command may have run).

Every operation is one round trip: a native command where Redis has one (GET, MGET,
SET ... PX, SET ... KEEPTTL GET, INCRBY, PEXPIRE, PTTL, DEL) and a Lua script where a check
and a write must be one step. Counters stay plain integers, so ``redis-cli INCR`` and
``increment`` agree. ``keys()``/``clear()`` SCAN the namespace; nothing ever flushes a
database. On a cluster the namespace is a hash tag (``{prefix}key``), so all of it lives in
one slot and multi-key operations stay atomic.

The async front end batches (``batching=True``, the default): under load, commands go out
together as one non-transactional pipeline (order kept, each caller gets its own reply or
error), at most ``max_batch`` at a time (see :mod:`~sanic_synchro_ctx.batching`). On a
cluster, the operations that run a Lua script go out on their own (redis-py refuses
EVALSHA in a cluster pipeline).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..batching import DEFAULT_MAX_BATCH, Batcher, Outcome, batch_limit
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

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

__all__ = ["AIORedis"]

_CHUNK = 500


def _client_options(redis: ModuleType, *, cluster: bool = False) -> dict[str, Any]:
    """Client options that every client of AIORedis gets: no retries, pooled connections
    checked before use.

    redis-py sends a command again after a timeout or a lost connection (3 retries by
    default in redis-py 8, and RedisCluster retries on top). A command that timed out may
    still be waiting in the server's input buffer, and runs when the server resumes: sent
    again, an INCRBY is applied twice (seen: a counter 16 above the increments issued after
    a 7 s stall). So no operation is ever sent twice; a timeout is reported as
    SynchroConnectionError saying that its effect is unknown.

    Without retries, a pooled connection that the server closed (a restart) must be noticed
    before a command goes out on it. redis-py's pool checks for that, except when
    maintenance notifications are on, which redis-py >= 7 enables by default ("auto"); a
    plain Redis or Valkey server sends none, so they are turned off.
    """
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    options: dict[str, Any] = {"retry": Retry(NoBackoff(), 0), "retry_on_error": []}
    if not cluster:  # a RedisCluster has no such option (its retry object decides)
        options["retry_on_timeout"] = False
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # redis-py < 7: no notifications, the pool always checks
        pass
    else:
        options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    return options


def _import_redis() -> ModuleType:
    try:
        import redis
        import redis.asyncio
        import redis.asyncio.cluster
    except ImportError:
        raise ImportError(
            'AIORedis needs redis-py: pip install "sanic-synchro-ctx[redis]"'
        ) from None
    return redis


#: One command, issued on a client (returns an awaitable) or queued on a pipeline.
_Command = Callable[[Any], Any]


class _Session:
    """One loop's client, the scripts registered on it and its batcher."""

    __slots__ = ("batcher", "client", "scripts")

    def __init__(self, client: Any, max_batch: int | None) -> None:
        self.client = client
        self.scripts = {name: client.register_script(source) for name, source in SCRIPTS.items()}
        self.batcher: Batcher[_Command] | None = None
        if max_batch is not None:
            self.batcher = Batcher(
                asyncio.get_running_loop(), self._send_one, self._send_many, max_batch
            )

    async def _send_one(self, command: _Command) -> Any:
        return await command(self.client)

    async def _send_many(self, commands: list[_Command]) -> list[Outcome]:
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            command(pipe)
        replies = await pipe.execute(raise_on_error=False)
        return [
            (False, reply) if isinstance(reply, Exception) else (True, reply) for reply in replies
        ]

    def run(self, command: _Command) -> Awaitable[Any]:
        """Issue ``command``: batched with concurrent ones when batching is on."""
        if self.batcher is None:
            awaitable: Awaitable[Any] = command(self.client)
            return awaitable
        return self.batcher.submit(command)


class AIORedis(NetworkInterface[_Session]):
    """The context in Redis (or a Redis Cluster), through ``redis.asyncio``."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        prefix: str | None = None,
        serializer: Serializer | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        batching: bool = True,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        redis = _import_redis()
        self._max_batch = batch_limit(batching, max_batch)
        if not isinstance(client, (redis.asyncio.Redis, redis.asyncio.RedisCluster)):
            raise SynchroValueError(
                "AIORedis takes a redis.asyncio.Redis or redis.asyncio.RedisCluster; "
                f"got {type(client).__name__} (use AIORedis.from_url(url) to build one)"
            )
        self._redis = redis
        self._cluster = isinstance(client, redis.asyncio.RedisCluster)
        self._template = client
        # redis-py's pools (and every cluster node's) fail a command at once when all
        # their connections are busy, before sending it: the operation then waits.
        busy = getattr(redis.exceptions, "MaxConnectionsError", None)
        self.busy_errors = (busy,) if busy is not None else ()
        self.connection_errors = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            redis.exceptions.ClusterDownError,
            OSError,
        )
        super().__init__(prefix=prefix, serializer=serializer, max_value_size=max_value_size)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        cluster: bool = False,
        prefix: str | None = None,
        serializer: Serializer | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        batching: bool = True,
        max_batch: int = DEFAULT_MAX_BATCH,
        **kwargs: Any,
    ) -> AIORedis:
        """Build the client from ``url`` (``cluster=True``: a RedisCluster); ``kwargs`` go to
        the client. Defaults: 5 s socket timeouts (every call ends within them); a pool of
        100 connections (a burst of more concurrent operations waits for a connection
        instead of failing). Retries are always off (see the class docstring)."""
        redis = _import_redis()
        kwargs.setdefault("socket_timeout", DEFAULT_TIMEOUT)
        kwargs.setdefault("socket_connect_timeout", DEFAULT_TIMEOUT)
        kwargs.update(_client_options(redis, cluster=cluster))
        client: Any
        if cluster:
            client = redis.asyncio.RedisCluster.from_url(url, **kwargs)
        else:
            kwargs.setdefault("max_connections", 100)
            pool = redis.asyncio.ConnectionPool.from_url(url, **kwargs)
            client = redis.asyncio.Redis.from_pool(pool)
        return cls(
            client,
            prefix=prefix,
            serializer=serializer,
            max_value_size=max_value_size,
            batching=batching,
            max_batch=max_batch,
        )

    def _key_prefix(self, prefix: str) -> str:
        if not self._cluster:
            return prefix
        if "{" in prefix or "}" in prefix:
            raise SynchroValueError("a Redis Cluster prefix must not contain '{' or '}'")
        return "{" + prefix + "}"

    # -- sessions -------------------------------------------------------------------------

    def _clone(self) -> Any:
        """A new client with the template's settings, bytes responses and no retries."""
        redis = self._redis
        template: Any = self._template
        if self._cluster:
            cluster = redis.asyncio.RedisCluster
            accepted = inspect.signature(cluster.__init__).parameters
            kwargs = {
                name: value
                for name, value in template.connection_kwargs.items()
                if name in accepted and name not in ("host", "port", "startup_nodes")
            }
            kwargs.update(_client_options(redis, cluster=True), decode_responses=False)
            nodes = [
                redis.asyncio.cluster.ClusterNode(node.host, node.port)
                for node in template.startup_nodes
            ]
            return cluster(startup_nodes=nodes, **kwargs)
        pool = template.connection_pool
        kwargs = dict(pool.connection_kwargs, decode_responses=False, **_client_options(redis))
        if isinstance(pool, redis.asyncio.BlockingConnectionPool):
            kwargs["timeout"] = pool.timeout
        fresh = type(pool)(
            connection_class=pool.connection_class, max_connections=pool.max_connections, **kwargs
        )
        return redis.asyncio.Redis.from_pool(fresh)

    async def _open(self) -> _Session:
        session = _Session(self._clone(), self._max_batch)
        if self._cluster:
            # Initialize once, here (one opener per loop), not lazily from concurrent
            # commands: redis-py >= 7.1 breaks connections when several tasks initialize
            # a fresh RedisCluster at once (7.0.1 did not).
            await session.client.initialize()
        return session

    async def _shut(self, session: _Session) -> None:
        await session.client.aclose()

    # -- primitives -----------------------------------------------------------------------

    async def _get(self, key: str) -> bytes | None:
        session = self._cached() or await self._session()
        raw = encode_key(key)
        value: bytes | None = await session.run(lambda c: c.get(raw))
        return value

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        session = self._cached() or await self._session()
        raw = [encode_key(key) for key in keys]
        if self._cluster:  # redis-py refuses MGET in a cluster pipeline: not batched
            cluster_values: list[bytes | None] = await session.client.mget(raw)
            return cluster_values
        values: list[bytes | None] = await session.run(lambda c: c.mget(raw))
        return values

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        session = self._cached() or await self._session()
        px = None if ttl is None else milliseconds(ttl)
        raw = encode_key(key)
        await session.run(lambda c: c.set(raw, value, px=px))

    async def _script(self, name: str, keys: list[bytes], args: list[Any]) -> Any:
        session = self._cached() or await self._session()
        script = session.scripts[name]
        if self._cluster:  # redis-py refuses EVALSHA in a cluster pipeline: not batched
            return await script(keys=keys, args=args)
        sha = script.sha
        try:
            return await session.run(lambda c: c.evalsha(sha, len(keys), *keys, *args))
        except self._redis.exceptions.NoScriptError:
            return await script(keys=keys, args=args)  # loads the script, then runs it

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
        session = self._cached() or await self._session()
        raw = {encode_key(k) for k in keys}
        deleted: int = await session.run(lambda c: c.delete(*raw))
        return deleted

    async def _increment(self, key: str, by: int) -> int:
        session = self._cached() or await self._session()
        raw = encode_key(key)
        try:
            value: int = await session.run(lambda c: c.incrby(raw, by))
        except self._redis.exceptions.ResponseError:
            # INCRBY refused and left the value as it was; tell the caller why.
            raise increment_error(await session.client.get(raw)) from None
        return value

    async def _replace(self, key: str, value: bytes) -> bytes | None:
        session = self._cached() or await self._session()
        raw = encode_key(key)
        old: bytes | None = await session.run(lambda c: c.set(raw, value, keepttl=True, get=True))
        return old

    async def _compare_and_set(
        self, key: str, expected: bytes, new: bytes, ttl: float | None
    ) -> bool:
        px = "" if ttl is None else milliseconds(ttl)
        return bool(await self._script("compare_and_set", [encode_key(key)], [expected, new, px]))

    async def _expire(self, key: str, ttl: float | None) -> bool:
        if ttl is None:
            return bool(await self._script("persist", [encode_key(key)], []))
        session = self._cached() or await self._session()
        raw, ms = encode_key(key), milliseconds(ttl)
        return bool(await session.run(lambda c: c.pexpire(raw, ms)))

    async def _ttl(self, key: str) -> float | None:
        session = self._cached() or await self._session()
        raw = encode_key(key)
        return seconds_left(await session.run(lambda c: c.pttl(raw)))

    async def _scan(self, prefix: str) -> list[bytes]:
        session = self._cached() or await self._session()
        pattern = match_pattern(prefix)
        return [raw async for raw in session.client.scan_iter(match=pattern, count=1000)]

    async def _keys(self, prefix: str) -> list[str]:
        return [decode_key(raw) for raw in await self._scan(prefix)]

    async def _clear(self, prefix: str) -> None:
        found = await self._scan(prefix)
        session = self._cached() or await self._session()
        for start in range(0, len(found), _CHUNK):
            await session.client.delete(*found[start : start + _CHUNK])

    async def _lock_acquire(self, key: str, token: str, ttl: float) -> str | None:
        holder = await self._script("lock_acquire", [encode_key(key)], [token, milliseconds(ttl)])
        return None if holder is None else decode_key(holder)

    async def _lock_release(self, key: str, token: str) -> bool:
        return bool(await self._script("lock_release", [encode_key(key)], [token]))

    def __repr__(self) -> str:
        kind = "RedisCluster" if self._cluster else "Redis"
        return f"AIORedis({kind})"
