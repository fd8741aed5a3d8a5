"""AIORedis: Redis through ``redis.asyncio`` (the aioredis-2 API, now part of redis-py).

``AIORedis(client)`` takes a ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster`` (or
valkey-py's ``valkey.asyncio.Valkey`` or ``ValkeyCluster``, the same API under other names:
the per-loop clients are then valkey-py's too); ``AIORedis.from_url(url, **kwargs)`` builds
a redis-py one. Operations run on clients built from the
given client's settings, one per event loop (a client belongs to one loop), with bytes
responses and retries off: redis-py would send a command that timed out again, and an
increment still queued in a stalled server would then be applied twice. A timeout raises
SynchroConnectionError, whose effect is unknown (the command may have run).

The operations are those of :mod:`sanic_synchro_ctx.interfaces.redis.interface`, shared
with AsyncioRedis. On a cluster the
namespace is a hash tag (``{prefix}key``), so all of it lives in one slot and multi-key
operations stay atomic.

The async front end batches (``batching=True``, the default): under load, commands go out
together as one non-transactional pipeline (order kept, each caller gets its own reply or
error), at most ``max_batch`` at a time (see :mod:`~sanic_synchro_ctx.batching`). On a
cluster, the operations that run a Lua script or MGET go out on their own (redis-py refuses
EVALSHA and MGET in a cluster pipeline).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from ... import cancellation
from ...batching import DEFAULT_MAX_BATCH, Batcher, Outcome, batch_limit
from ...checks import check_timeout
from ...deadlines import bounded
from ...errors import SynchroConnectionError, SynchroValueError, missing_client
from ...masking import check_userinfo, mask_password
from ...notifications import Deliver, Listener
from ...serializer import Serializer
from ..base import DEFAULT_MAX_VALUE_SIZE, DEFAULT_TIMEOUT
from .interface import IncrementRefused, RedisInterface, RedisSession, SetIfMissingRefused
from .scripts import SCRIPTS, decode_key, encode_key

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

__all__ = ["AIORedis"]


def refused_as_syntax(error: Exception) -> bool:
    """Whether Redis refused a command as malformed ("ERR syntax error", which redis-py
    and valkey-py hand on without "ERR "): it was not run at all."""
    return str(error).startswith("syntax error")


class _Library(NamedTuple):
    """redis-py, or valkey-py (its fork: the same API under other names)."""

    name: str
    module: ModuleType  # the package: its ``exceptions``
    client: Any  # redis.asyncio.Redis / valkey.asyncio.Valkey
    cluster: Any  # redis.asyncio.RedisCluster / valkey.asyncio.ValkeyCluster
    cluster_node: Any
    blocking_pool: Any
    pool: Any
    retry: Any
    no_backoff: Any
    maint_config: Any  # MaintNotificationsConfig (redis-py >= 7), or None
    sentinel: Any  # redis.asyncio.sentinel.Sentinel
    sentinel_pool: Any  # redis.asyncio.sentinel.SentinelConnectionPool


def _import_library(name: str = "redis") -> _Library:
    """The client library ``name`` ("redis" or "valkey"), imported now (never at import of
    this module: the client is an extra)."""
    try:
        package = importlib.import_module(name)
        asyncio_api = importlib.import_module(f"{name}.asyncio")
        cluster_api = importlib.import_module(f"{name}.asyncio.cluster")
        retry = importlib.import_module(f"{name}.asyncio.retry").Retry
        sentinel_api = importlib.import_module(f"{name}.asyncio.sentinel")
        no_backoff = importlib.import_module(f"{name}.backoff").NoBackoff
    except ImportError:
        if name == "valkey":
            raise missing_client("AIORedis", "valkey", "valkey-py", "valkey") from None
        raise missing_client("AIORedis", "redis", "redis-py", "redis") from None
    try:
        maint = importlib.import_module(f"{name}.maint_notifications").MaintNotificationsConfig
    except (ImportError, AttributeError):  # before redis-py 7, and valkey-py: no such thing
        maint = None
    prefix = "Valkey" if name == "valkey" else "Redis"
    return _Library(
        name,
        package,
        getattr(asyncio_api, prefix),
        getattr(asyncio_api, f"{prefix}Cluster"),
        cluster_api.ClusterNode,
        asyncio_api.BlockingConnectionPool,
        asyncio_api.ConnectionPool,
        retry,
        no_backoff,
        maint,
        sentinel_api.Sentinel,
        sentinel_api.SentinelConnectionPool,
    )


def _address_of(client: Any) -> tuple[str, int]:
    """(host, port) a client of one server connects to."""
    options = client.connection_pool.connection_kwargs
    return options["host"], options["port"]


def _library_of(client: Any) -> str:
    """Which library made ``client`` (or the class it derives from): valkey-py or redis-py."""
    modules = {cls.__module__.partition(".")[0] for cls in type(client).__mro__}
    return "valkey" if "valkey" in modules else "redis"


def _client_options(library: _Library, *, cluster: bool = False) -> dict[str, Any]:
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
    options: dict[str, Any] = {
        "retry": library.retry(library.no_backoff(), 0),
        "retry_on_error": [],
    }
    if not cluster:  # a RedisCluster has no such option (its retry object decides)
        options["retry_on_timeout"] = False
    if library.maint_config is not None:
        options["maint_notifications_config"] = library.maint_config(enabled=False)
    return options


#: Seconds a command waits for a free connection of a pool before it fails.
BUSY_TIMEOUT = 5.0

#: One command, issued on a client (returns an awaitable) or queued on a pipeline.
_Command = Callable[[Any], Any]


class _Session(RedisSession):
    """One loop's redis-py client, the scripts registered on it and its batcher."""

    def __init__(
        self,
        client: Any,
        max_batch: int | None,
        cluster: bool,
        redis: Any,
        replicas: tuple[int, int] = (0, 0),
        timeout: float | None = None,
    ) -> None:
        self.client = client
        self.cluster = cluster
        self._errors = redis.exceptions
        #: (replicas, milliseconds): every round trip ends with WAIT replicas milliseconds
        self._replicas = replicas
        busy = getattr(redis.exceptions, "MaxConnectionsError", None)
        self._busy: tuple[type[Exception], ...] = (busy,) if busy is not None else ()
        self.scripts = {name: client.register_script(source) for name, source in SCRIPTS.items()}
        self._loaded = False  # every script loaded at once (before a pipeline)
        self.batcher: Batcher[_Command] | None = None
        if max_batch is not None:
            # without WAIT, a lone command is _send_alone's: one coroutine layer less each
            send_one = self._send_one if replicas[0] else self._send_alone
            loop = asyncio.get_running_loop()
            self.batcher = Batcher(loop, send_one, self._send_many, max_batch, timeout)

    async def _send_one(self, command: _Command) -> Any:
        if self._replicas[0]:  # the WAIT must follow on the same connection: a pipeline
            ((ok, value),) = await self._send_many([command])
            if not ok:
                raise value
            return value
        return await self._send_alone(command)

    def _unbatched(self, command: _Command, *, wait: bool = True) -> Awaitable[Any]:
        """Send ``command`` outside the batcher (what a pipeline cannot carry, or a second
        step), counted as a round trip of its own; ``wait``: followed by WAIT if asked."""
        if self.batcher is not None:
            self.batcher.count_alone()
        return self._send_one(command) if wait else self._send_alone(command)

    async def _send_alone(self, command: _Command) -> Any:
        """``command`` on its own, with no WAIT (reads that cannot go in a pipeline); a
        cancellation redis-py lost while it wrote the command is raised here (see
        ``cancellation``)."""
        waited = 0.0
        before = cancellation.mark()
        while True:
            try:
                reply = await command(self.client)
            except self._busy as exc:
                waited = await self._wait_for_a_connection(waited, exc)
                continue
            cancellation.keep(before)
            return reply

    async def _send_many(self, commands: list[_Command]) -> list[Outcome]:
        waited = 0.0
        before = cancellation.mark()
        while True:
            pipe = self.client.pipeline(transaction=False)
            for command in commands:
                command(pipe)
            replicas, milliseconds = self._replicas
            if replicas:
                pipe.execute_command("WAIT", replicas, milliseconds)
            try:
                replies = await pipe.execute(raise_on_error=False)
            except self._busy as exc:
                waited = await self._wait_for_a_connection(waited, exc)
                continue
            cancellation.keep(before)
            if replicas:
                acknowledged = replies.pop()
                if not isinstance(acknowledged, int) or acknowledged < replicas:
                    # a Sentinel-managed pool asks the Sentinels again on its next connect:
                    # after a failover, the master it writes to may have no replicas left
                    await self._forget_connections()
                    lost = SynchroConnectionError(
                        f"AIORedis: {acknowledged!r} of the {replicas} replicas asked for "
                        f"acknowledged within {milliseconds} ms: the effect is unknown (it "
                        "was applied on the master, and may be lost in a failover)"
                    )
                    # a command that failed wrote nothing: it keeps its own error
                    return [
                        (False, reply if isinstance(reply, Exception) else lost)
                        for reply in replies
                    ]
            return [
                (False, reply) if isinstance(reply, Exception) else (True, reply)
                for reply in replies
            ]

    async def _forget_connections(self) -> None:
        """Close the idle connections of a Sentinel-managed pool (no-op for other pools)."""
        pool = getattr(self.client, "connection_pool", None)
        if pool is not None and hasattr(pool, "sentinel_manager"):
            with contextlib.suppress(Exception):
                await pool.disconnect(inuse_connections=False)

    @staticmethod
    async def _wait_for_a_connection(waited: float, exc: Exception) -> float:
        """redis-py's pools (and every cluster node's) refuse a command at once, before
        sending it, when all their connections are busy: a burst waits for one instead
        (up to BUSY_TIMEOUT seconds). Nothing was sent: trying again sends it once."""
        if waited >= BUSY_TIMEOUT:
            raise exc
        delay = min(0.001 + waited / 4, 0.05)
        await asyncio.sleep(delay)
        return waited + delay

    def run(self, command: _Command) -> Awaitable[Any]:
        """Issue ``command``: batched with concurrent ones when batching is on."""
        if self.batcher is None:
            return self._send_one(command)
        return self.batcher.submit(command)

    def get(self, key: bytes) -> Awaitable[bytes | None]:
        return self.run(lambda c: c.get(key))

    async def mget(self, keys: list[bytes]) -> list[bytes | None]:
        if self.cluster:  # redis-py refuses MGET in a cluster pipeline: not batched
            found: list[bytes | None] = await self._unbatched(lambda c: c.mget(keys))
            return found
        values: list[bytes | None] = await self.run(lambda c: c.mget(keys))
        return values

    def set(self, key: bytes, value: bytes, px: int | None) -> Awaitable[object]:
        return self.run(lambda c: c.set(key, value, px=px))

    sets_if_missing = True

    async def set_if_missing(self, key: bytes, value: bytes, px: int | None) -> bytes | None:
        try:
            held: bytes | None = await self.run(
                lambda c: c.set(key, value, nx=True, get=True, px=px)
            )
        except self._errors.ResponseError as exc:
            if not refused_as_syntax(exc):
                raise
            self.sets_if_missing = False  # Redis 6.2 parses NX with GET as a syntax error
            raise SetIfMissingRefused from None
        return held

    async def incrby(self, key: bytes, by: int) -> int:
        try:
            value: int = await self.run(lambda c: c.incrby(key, by))
        except self._errors.ResponseError:
            raise IncrementRefused from None
        return value

    async def pexpire(self, key: bytes, ms: int) -> bool:
        return bool(await self.run(lambda c: c.pexpire(key, ms)))

    async def pttl(self, key: bytes) -> int:
        left: int = await self.run(lambda c: c.pttl(key))
        return left

    async def delete(self, keys: Sequence[bytes]) -> int:
        deleted: int = await self.run(lambda c: c.delete(*keys))
        return deleted

    async def scan(self, match: bytes) -> list[bytes]:
        async def collect(client: Any) -> list[bytes]:
            return [raw async for raw in client.scan_iter(match=match, count=1000)]

        found: list[bytes] = await self._unbatched(collect, wait=False)
        return found

    async def scan_page(
        self, head: bytes, match: bytes, cursor: Any, count: int
    ) -> tuple[Any, list[bytes]]:
        client = self.client
        if self.cluster:  # a namespace lives in one slot: its node holds all of it
            node = client.get_node_from_key(head)
            positions, found = await self._unbatched(
                lambda c: c.scan(cursor=cursor or 0, match=match, count=count, target_nodes=node),
                wait=False,
            )
            position = positions[node.name]
        else:
            position, found = await self._unbatched(
                lambda c: c.scan(cursor=cursor or 0, match=match, count=count), wait=False
            )
        return (None if position == 0 else position), list(found)

    async def script(self, name: str, keys: list[bytes], args: list[Any]) -> Any:
        script = self.scripts[name]
        if self.cluster:  # redis-py refuses EVALSHA in a cluster pipeline: not batched
            return await self._unbatched(lambda c: script(keys=keys, args=args, client=c))
        sha = script.sha
        try:
            return await self.run(lambda c: c.evalsha(sha, len(keys), *keys, *args))
        except self._errors.NoScriptError:
            # NOSCRIPT: it never ran; EVAL runs it (and caches it for the next EVALSHA) in
            # one command, which a pipeline can carry too
            source = script.script
            return await self._unbatched(lambda c: c.eval(source, len(keys), *keys, *args))

    def publish(self, channel: bytes, data: bytes) -> Awaitable[int]:
        if self.cluster:  # sharded: to the node of the namespace's slot, and its replicas
            return self._unbatched(
                lambda c: c.execute_command("SPUBLISH", channel, data), wait=False
            )
        return self.run(lambda c: c.publish(channel, data))

    async def prepare(self) -> None:
        if self.cluster or self._loaded:
            return
        pipe = self.client.pipeline(transaction=False)
        for source in SCRIPTS.values():
            pipe.script_load(source)
        before = cancellation.mark()
        await pipe.execute()
        self._loaded = True
        cancellation.keep(before)

    async def close(self) -> None:
        await self.client.aclose()


#: Seconds a subscribed connection waits for a message before it waits again (a wait in
#: the client, not a round trip).
_IDLE_WAIT = 30.0


class _PubSubListener(Listener):
    """A redis-py PubSub on a client of its own, read by a task of the running loop."""

    def __init__(self, client: Any, deliver: Deliver) -> None:
        super().__init__()
        self._client = client
        self._pubsub = client.pubsub()
        self._deliver = deliver
        self._reader: asyncio.Task[None] | None = None

    async def start(self, channels: list[bytes], sharded: bool, timeout: float) -> None:
        """Subscribe, and return once Redis confirmed every channel (live from then on)."""
        pubsub = self._pubsub
        before = cancellation.mark()
        if sharded:
            await bounded(pubsub.ssubscribe(*channels), timeout)
        else:
            await bounded(pubsub.subscribe(*channels), timeout)
        cancellation.keep(before)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        confirmed = 0
        while confirmed < len(channels):
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"Redis did not confirm the subscription within {timeout} s")
            message = await pubsub.get_message(timeout=left)
            if message is not None:
                confirmed += message["type"] in ("subscribe", "ssubscribe")
                self._hand_over(message)
        self._reader = loop.create_task(self._read())

    def _hand_over(self, message: dict[str, Any]) -> None:
        if message["type"] in ("message", "smessage"):
            self._deliver(decode_key(message["channel"]), message["data"], 0)

    async def _read(self) -> None:
        pubsub = self._pubsub
        try:
            while True:
                message = await pubsub.get_message(timeout=_IDLE_WAIT)
                if message is not None:
                    self._hand_over(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.lose(exc)

    async def aclose(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
        with contextlib.suppress(Exception):
            await self._client.aclose()
        await super().aclose()


def _check_database(url: str, *, cluster: bool) -> None:
    """SynchroValueError unless ``url``'s path names a database by its number.

    redis-py reads the path by deleting every ``/`` and keeps db 0 when the rest is no
    number: ``redis://host/notanumber`` would use db 0 and ``redis://host/1/2`` db 12."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "unix":
        return  # the path is the socket's; the database is ?db=
    text = parts.path[1:] if parts.path.startswith("/") else parts.path
    if text and not (text.isascii() and text.isdigit()):
        raise SynchroValueError(
            f"{mask_password(url)!r}: the database must be a number, not {text!r}"
        )
    if cluster and text and int(text) != 0:
        raise SynchroValueError(f"{mask_password(url)!r}: a Redis Cluster has database 0 only")


class AIORedis(RedisInterface):
    """The context in Redis (or a Redis Cluster, or a Redis watched by Sentinel), through
    ``redis.asyncio``.

    ``wait_replicas=N`` ends every round trip with ``WAIT N`` (at most ``wait_timeout``
    seconds): an operation returns only once N replicas hold what it wrote, else it raises
    SynchroConnectionError (applied on the master, maybe lost in a failover). Redis
    replicates asynchronously: without it, a failover may lose acknowledged writes.
    """

    def __init__(
        self,
        client: Redis | RedisCluster | Any,
        *,
        prefix: str | None = None,
        serializer: Serializer | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        batching: bool = True,
        max_batch: int = DEFAULT_MAX_BATCH,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        library = _import_library(_library_of(client))
        self._max_batch = batch_limit(batching, max_batch)
        if isinstance(wait_replicas, bool) or not isinstance(wait_replicas, int):
            raise SynchroValueError("wait_replicas must be an int >= 0")
        if wait_replicas < 0:
            raise SynchroValueError("wait_replicas must be an int >= 0")
        seconds = check_timeout(wait_timeout)
        if seconds is None or seconds >= DEFAULT_TIMEOUT:
            raise SynchroValueError(
                f"wait_timeout must be a number of seconds below {DEFAULT_TIMEOUT} (the "
                "socket timeout)"
            )
        self._replicas = (wait_replicas, max(1, round(seconds * 1000)))
        if not isinstance(client, (library.client, library.cluster)):
            raise SynchroValueError(
                "AIORedis takes a redis.asyncio.Redis or RedisCluster (or valkey-py's Valkey "
                f"or ValkeyCluster); got {type(client).__name__} (use AIORedis.from_url(url) "
                "to build one)"
            )
        self._library = library
        self._cluster = isinstance(client, library.cluster)
        if self._cluster and wait_replicas:
            raise SynchroValueError("wait_replicas is for Redis with replicas, not a Cluster")
        pool = getattr(client, "connection_pool", None)
        self._sentinel = isinstance(pool, library.sentinel_pool)
        self.ordered_batches = not self._cluster
        self._template = client
        needed = ("startup_nodes", "connection_kwargs") if self._cluster else ("connection_pool",)
        if not all(hasattr(client, name) for name in needed):
            raise SynchroValueError(
                f"cannot read this client's settings ({', '.join(needed)}; checked against "
                "redis-py 5 to 8): AIORedis builds a client per event loop from them"
            )
        errors = library.module.exceptions
        self.connection_errors = (
            errors.ConnectionError,
            errors.TimeoutError,
            errors.ClusterDownError,
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
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        **kwargs: Any,
    ) -> AIORedis:
        """Build the client from ``url`` (``cluster=True``: a RedisCluster); ``kwargs`` go to
        the client. Defaults: 5 s socket timeouts (every call ends within them); a pool of
        100 connections (a burst of more concurrent operations waits for a connection
        instead of failing). Retries are always off (see the class docstring)."""
        check_userinfo(url)
        _check_database(url, cluster=cluster)
        library = _import_library()
        kwargs.setdefault("socket_timeout", DEFAULT_TIMEOUT)
        kwargs.setdefault("socket_connect_timeout", DEFAULT_TIMEOUT)
        kwargs.update(_client_options(library, cluster=cluster))
        client: Any
        if cluster:
            client = library.cluster.from_url(url, **kwargs)
        else:
            kwargs.setdefault("max_connections", 100)
            pool = library.pool.from_url(url, **kwargs)
            client = library.client.from_pool(pool)
        return cls(
            client,
            prefix=prefix,
            serializer=serializer,
            max_value_size=max_value_size,
            batching=batching,
            max_batch=max_batch,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
        )

    @classmethod
    def from_sentinel(
        cls,
        sentinels: Sequence[tuple[str, int]],
        service_name: str,
        *,
        prefix: str | None = None,
        serializer: Serializer | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        batching: bool = True,
        max_batch: int = DEFAULT_MAX_BATCH,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        sentinel_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> AIORedis:
        """The master of ``service_name`` as the Sentinels at ``sentinels`` (host, port)
        name it, now and after each failover. ``kwargs`` go to the master's connections
        (``password``, ``db``, ``ssl``...), ``sentinel_kwargs`` to the Sentinels'. Defaults
        as :meth:`from_url`."""
        library = _import_library()
        places: Any = sentinels
        if isinstance(places, (str, bytes)) or not places:
            raise SynchroValueError("sentinels must be a non-empty list of (host, port)")
        if not isinstance(service_name, str) or not service_name:
            raise SynchroValueError("service_name must be a non-empty str")
        kwargs.setdefault("socket_timeout", DEFAULT_TIMEOUT)
        kwargs.setdefault("socket_connect_timeout", DEFAULT_TIMEOUT)
        kwargs.setdefault("max_connections", 100)
        watchers = dict(sentinel_kwargs or {})
        watchers.setdefault("socket_timeout", kwargs["socket_timeout"])
        watchers.setdefault("socket_connect_timeout", kwargs["socket_connect_timeout"])
        sentinel = library.sentinel(
            [(host, port) for host, port in sentinels], sentinel_kwargs=watchers
        )
        client = sentinel.master_for(service_name, **kwargs, **_client_options(library))
        return cls(
            client,
            prefix=prefix,
            serializer=serializer,
            max_value_size=max_value_size,
            batching=batching,
            max_batch=max_batch,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
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
        library = self._library
        template: Any = self._template
        if self._cluster:
            cluster = library.cluster
            accepted = inspect.signature(cluster.__init__).parameters
            kwargs = {
                name: value
                for name, value in template.connection_kwargs.items()
                if name in accepted and name not in ("host", "port", "startup_nodes")
            }
            kwargs.update(_client_options(library, cluster=True), decode_responses=False)
            nodes = [library.cluster_node(node.host, node.port) for node in template.startup_nodes]
            return cluster(startup_nodes=nodes, **kwargs)
        pool = template.connection_pool
        if self._sentinel:
            return self._clone_sentinel(pool)
        kwargs = dict(pool.connection_kwargs, decode_responses=False, **_client_options(library))
        if isinstance(pool, library.blocking_pool):
            kwargs["timeout"] = pool.timeout
        fresh = type(pool)(
            connection_class=pool.connection_class, max_connections=pool.max_connections, **kwargs
        )
        return library.client.from_pool(fresh)

    def _clone_sentinel(self, pool: Any) -> Any:
        """A client of the same Sentinel service, with a Sentinel of its own (its clients
        to the Sentinels belong to one loop too): never ``type(pool)(...)``, which lacks
        the service and the Sentinels."""
        library = self._library
        watching = pool.sentinel_manager
        addresses = [_address_of(one) for one in watching.sentinels]
        sentinel = library.sentinel(
            addresses,
            min_other_sentinels=watching.min_other_sentinels,
            sentinel_kwargs=dict(watching.sentinel_kwargs),
        )
        kwargs = {
            name: value
            for name, value in pool.connection_kwargs.items()
            if name != "connection_pool"  # the old pool's own back reference
        }
        kwargs.update(decode_responses=False, **_client_options(library))
        fresh = library.sentinel_pool(
            pool.service_name,
            sentinel,
            connection_class=pool.connection_class,
            max_connections=pool.max_connections,
            is_master=pool.is_master,
            check_connection=pool.check_connection,
            **kwargs,
        )
        return library.client.from_pool(fresh)

    async def open_session(self) -> _Session:
        session = _Session(
            self._clone(),
            self._max_batch,
            self._cluster,
            self._library.module,
            self._replicas,
            self._wait_bound(),
        )
        if self._cluster:
            # Initialize once, here (one opener per loop), not lazily from concurrent
            # commands: redis-py >= 7.1 breaks connections when several tasks initialize
            # a fresh RedisCluster at once (7.0.1 did not).
            await session.client.initialize()
        return session

    # -- notifications ----------------------------------------------------------------------

    async def raw_listen(self, channels: list[str], deliver: Deliver) -> Listener:
        """SUBSCRIBE on a connection of its own (a client built for it: it may live on a
        loop of its own). On a cluster: SSUBSCRIBE on the node that holds the namespace's
        slot (channels carry its hash tag), where SPUBLISH sends them."""
        raw = [encode_key(channel) for channel in channels]
        if self._cluster:
            cluster = self._clone()
            try:
                await cluster.initialize()
                node = cluster.get_node_from_key(raw[0])
                client = self._node_client(node.host, node.port)
            finally:
                await cluster.aclose()
        else:
            client = self._clone()
        listener = _PubSubListener(client, deliver)
        try:
            await listener.start(raw, self._cluster, self._wait_bound())
        except BaseException:
            await listener.aclose()
            raise
        return listener

    def _node_client(self, host: str, port: int) -> Any:
        """A plain client of one cluster node, with the cluster client's settings."""
        library = self._library
        accepted = inspect.signature(library.client.__init__).parameters
        kwargs = {
            name: value
            for name, value in self._template.connection_kwargs.items()
            if name in accepted and name not in ("host", "port")
        }
        # the cluster's options: retries off, and no retry_on_timeout (deprecated there)
        kwargs.update(_client_options(library, cluster=True), decode_responses=False)
        return library.client(host=host, port=port, **kwargs)

    def _wait_bound(self) -> float:
        """Seconds a subscription waits for Redis: the client's socket timeout."""
        template: Any = self._template
        options = (
            template.connection_kwargs
            if self._cluster
            else template.connection_pool.connection_kwargs
        )
        return float(options.get("socket_timeout") or DEFAULT_TIMEOUT)

    @property
    def endpoint(self) -> str:
        template = self._template
        if self._cluster:
            nodes = ",".join(f"{node.host}:{node.port}" for node in template.startup_nodes)
            return f"redis+cluster://{nodes}"
        pool = template.connection_pool
        options = pool.connection_kwargs
        if self._sentinel:
            watchers = ",".join(
                "{}:{}".format(*_address_of(one)) for one in pool.sentinel_manager.sentinels
            )
            return f"redis+sentinel://{watchers}/{pool.service_name}/{options.get('db', 0)}"
        if "path" in options:
            return f"unix://{options['path']}?db={options.get('db', 0)}"
        scheme = "rediss" if "ssl" in pool.connection_class.__name__.lower() else "redis"
        host, port = options.get("host", "localhost"), options.get("port", 6379)
        return f"{scheme}://{host}:{port}/{options.get('db', 0)}"

    @property
    def client(self) -> Any:
        """The client this interface was built from (given, or made from a URL): the
        template of the clients it opens, one per event loop, with the same settings."""
        return self._template

    def __repr__(self) -> str:
        kind = type(self._template).__name__
        return f"AIORedis({kind})"
