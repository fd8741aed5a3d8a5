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
import os
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from ...batching import DEFAULT_MAX_BATCH, Batcher, Outcome, batch_limit
from ...checks import check_timeout
from ...deadlines import bounded
from ...errors import SynchroConnectionError, SynchroError, SynchroValueError, missing_client
from ...notifications import Deliver, Listener
from ...serializer import Serializer
from ..base import DEFAULT_MAX_VALUE_SIZE, DEFAULT_TIMEOUT
from .interface import IncrementRefused, RedisInterface, RedisSession
from .scripts import SCRIPTS, decode_key, encode_key

__all__ = ["AsyncioRedis"]

T = TypeVar("T")


def _import_asyncio_redis() -> Any:
    try:
        import asyncio_redis
    except ImportError:
        raise missing_client(
            "AsyncioRedis", "asyncio_redis", "asyncio_redis", "asyncio-redis"
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
            #: Called with the error once the connection is lost (a subscriber's listener).
            synchro_lost: Callable[[BaseException], None] | None = None

            def _push_answer(self, answer: Any) -> None:
                if self._queue and self._queue[0].done():
                    self._queue.popleft()  # its caller was cancelled: drop the reply
                    return
                super()._push_answer(answer)

            def connection_lost(self, exc: Exception | None) -> None:
                super().connection_lost(exc)
                if self.synchro_lost is not None:
                    self.synchro_lost(exc or ConnectionResetError("Redis closed the connection"))

        _protocol_class = Protocol
    return _protocol_class


def _whole(reading: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """Run a multi-bulk read (MGET, SCAN) to its end even if the caller is cancelled.

    asyncio_redis hands a multi-bulk reply over as one future per item; cancelling the
    caller while it consumes them cancels those futures, and when the data then arrives the
    connection's reader task dies on set_result() of a cancelled future: that connection
    never answers again. Shielded, the read always completes and only the caller stops.
    A read whose caller has gone and which then fails (the connection lost at server
    stop) has its exception taken here: else asyncio logs "Task exception was never
    retrieved" for it (seen in a worker's log after a cancelled request's SCAN).
    """
    inner = asyncio.ensure_future(reading)
    inner.add_done_callback(_taken)
    return asyncio.shield(inner)


def _taken(read: asyncio.Future[Any]) -> None:
    if not read.cancelled():
        read.exception()


def _bounded(awaitable: Awaitable[T], timeout: float | None) -> Awaitable[T]:
    """``awaitable``, bounded by ``timeout`` seconds when one is set."""
    if timeout is None:
        return awaitable
    return bounded(awaitable, timeout)


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


_MISSING: Any = object()
#: Keys SCAN looks at per round trip for keys() and clear() (as AIORedis).
_SCAN_COUNT = 1000


#: Error replies of a Redis that is up but does not serve commands yet.
_NOT_SERVING = ("LOADING ", "MASTERDOWN ")


def _not_serving(exc: BaseException | None, errors: Any) -> bool:
    """Whether ``exc`` is the error reply of a Redis that does not serve yet (``errors``:
    asyncio_redis's exceptions module): it ran nothing, and is unreachable for now."""
    return isinstance(exc, errors.ErrorReply) and str(exc).startswith(_NOT_SERVING)


class _Corked:
    """Stands in for a connection's transport while a batch is issued: keeps the writes,
    so that the whole batch goes out in one send."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)


class _Session(RedisSession):
    """One loop's pool, its loaded scripts and its batcher."""

    def __init__(
        self, owner: AsyncioRedis, pool: Any, max_batch: int | None, timeout: float | None
    ) -> None:
        self._owner = owner
        self.pool = pool
        self.scripts: dict[str, Any] = {}
        self.timeout = timeout
        self._errors = owner._module.exceptions
        self.batcher: Batcher[_Op] | None = None
        if max_batch is not None:
            self.batcher = Batcher(
                asyncio.get_running_loop(), self._send_one, self._send_many, max_batch, timeout
            )

    async def _renewed(self) -> Any:
        """A new pool in place of one whose connections were all lost.

        asyncio_redis reconnects in background tasks, which only run while their loop
        runs; the blocking front end's loop runs only during calls. So pools here do not
        reconnect by themselves: one that lost all its connections is replaced on the next
        call (which fails at once while the server is down).
        """
        old, self.scripts = self.pool, {}
        old.close()
        self.pool = await self._owner._new_pool()
        return self.pool

    def run(self, command: _Command, whole: bool = False) -> Awaitable[Any]:
        """Issue ``command`` (``whole``: it reads a multi-bulk reply), bounded by the
        timeout; batched with concurrent ones when batching is on."""
        op = (command, whole)
        if self.batcher is None:
            return _bounded(self._send_one(op), self.timeout)
        return _bounded(self.batcher.submit(op), self.timeout)

    async def _send_one(self, op: _Op) -> Any:
        pool = self.pool if self.pool.connections_connected else await self._renewed()
        command, whole = op
        return await (_whole(command(pool)) if whole else command(pool))

    async def _send_many(self, ops: list[_Op]) -> list[Outcome]:
        """Issue ``ops`` back to back on one connection, in one send; their outcomes."""
        pool = self.pool if self.pool.connections_connected else await self._renewed()
        protocol = pool.protocol  # a connected one, as the pool hands out for a command
        started = _issue(protocol, [command for command, _ in ops])
        if self.timeout is None:
            return await _answers(started)
        # Shielded: a multi-bulk read interrupted half way breaks its connection for good.
        return await bounded(asyncio.shield(_answers(started)), self.timeout)

    def get(self, key: bytes) -> Awaitable[bytes | None]:
        return self.run(lambda redis: redis.get(key))

    async def mget(self, keys: list[bytes]) -> list[bytes | None]:
        values: list[bytes | None] = await self.run(
            lambda redis: redis.mget_aslist(keys), whole=True
        )
        return values

    def set(self, key: bytes, value: bytes, px: int | None) -> Awaitable[object]:
        return self.run(lambda redis: redis.set(key, value, pexpire=px))

    async def incrby(self, key: bytes, by: int) -> int:
        try:
            value: int = await self.run(lambda redis: redis.incrby(key, by))
        except self._errors.ErrorReply as exc:
            if _not_serving(exc, self._errors):  # not a refusal: Redis is not serving yet
                raise
            raise IncrementRefused from None
        return value

    async def pexpire(self, key: bytes, ms: int) -> bool:
        return bool(await self.run(lambda redis: redis.pexpire(key, ms)))

    async def pttl(self, key: bytes) -> int:
        left: int = await self.run(lambda redis: redis.pttl(key))
        return left

    async def delete(self, keys: Sequence[bytes]) -> int:
        deleted: int = await self.run(lambda redis: redis.delete(list(keys)))
        return deleted

    async def scan(self, match: bytes) -> list[bytes]:
        pool = self.pool if self.pool.connections_connected else await self._renewed()

        async def fetch() -> list[bytes]:
            cursor = await pool.scan(match=match)
            # asyncio_redis asks SCAN for 10 keys at a time: a round trip per 10 keys of the
            # whole database (a database of 100,000 keys took longer than the timeout)
            cursor.count = _SCAN_COUNT
            found: list[bytes] = await cursor.fetchall()
            return found

        found: list[bytes] = await _bounded(_whole(fetch()), self.timeout)
        return found

    async def scan_page(
        self, head: bytes, match: bytes, cursor: Any, count: int
    ) -> tuple[Any, list[bytes]]:
        # asyncio_redis's own Cursor keeps Redis's cursor and what it read ahead
        if cursor is None:
            pool = self.pool if self.pool.connections_connected else await self._renewed()
            cursor = await _bounded(pool.scan(match=match), self.timeout)
            cursor.count = count
        scan = cursor

        async def page() -> list[bytes]:
            found: list[bytes] = []
            while len(found) < count:
                raw = await scan.fetchone()
                if raw is None:
                    break
                found.append(raw)
            return found

        found: list[bytes] = await _bounded(_whole(page()), self.timeout)
        return (cursor if len(found) == count else None), found

    async def script(self, name: str, keys: list[bytes], args: list[Any]) -> Any:
        encoded = [_arg(arg) for arg in args]
        for attempt in (1, 2):
            script: Any = self.scripts.get(name)
            if script is None:
                pool = self.pool if self.pool.connections_connected else await self._renewed()
                script = await _bounded(pool.register_script(SCRIPTS[name]), self.timeout)
                self.scripts[name] = script
            try:
                return await self.run(_evaluation(script.sha, keys, encoded))
            except self._errors.ScriptKilledError as exc:
                # Any error reply to EVALSHA comes as ScriptKilledError (the reply as its
                # context). A Redis not serving yet (LOADING) ran nothing: unreachable.
                reply = exc.__context__
                if _not_serving(reply, self._errors):
                    raise reply from None
                # Send the script again only if Redis did not have it (NOSCRIPT: it never
                # ran).
                self.scripts.pop(name, None)
                exists = await self.run(functools.partial(_script_exists, script.sha))
                if attempt == 2 or exists[0]:
                    raise
        raise AssertionError("unreachable")

    def publish(self, channel: bytes, data: bytes) -> Awaitable[int]:
        return self.run(lambda redis: redis.publish(channel, data))

    async def prepare(self) -> None:
        for name, source in SCRIPTS.items():
            if name not in self.scripts:
                pool = self.pool if self.pool.connections_connected else await self._renewed()
                self.scripts[name] = await _bounded(pool.register_script(source), self.timeout)

    async def close(self) -> None:
        self.pool.close()
        # Each connection's reader task ends once its transport reports the loss, a pass or
        # two of the loop later; a bridge loop may not run again, so let them end now.
        for _ in range(3):
            await asyncio.sleep(0)


#: A command issued in a batch: its coroutine and what it waits for, or its outcome.
_Started = tuple[Coroutine[Any, Any, Any] | None, Any]


def _issue(protocol: Any, commands: list[_Command]) -> list[_Started]:
    """Start each command on ``protocol`` up to its first wait (asyncio_redis writes a
    command before it waits for its reply), with the writes kept and sent as one."""
    transport = getattr(protocol, "transport", _MISSING)
    if transport is _MISSING or not hasattr(asyncio.Future, "_asyncio_future_blocking"):
        raise SynchroError(
            "asyncio_redis or asyncio changed (a protocol's transport, or the Future protocol "
            "flag): batching was checked against asyncio_redis 0.16; use batching=False"
        )
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


#: Seconds between two probes while a subscription waits to be live.
_PROBE_EVERY = 0.05


class _SubscriptionListener(Listener):
    """An asyncio_redis subscription on a connection of its own, read by a task."""

    def __init__(self, connection: Any, probe: bytes, deliver: Deliver) -> None:
        super().__init__()
        self._connection = connection
        self._probe = probe
        self._deliver = deliver
        self._reader: asyncio.Task[None] | None = None
        self._live: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        connection.protocol.synchro_lost = self._lost

    def _lost(self, exc: BaseException) -> None:
        if not self._live.done():
            self._live.set_exception(exc)
        self.lose(exc)

    async def start(self, channels: list[bytes], publish: Callable[[], Awaitable[Any]]) -> None:
        """Subscribe to ``channels`` and to this listener's own probe channel, in one
        SUBSCRIBE, and return once a probe came back: the subscription is live then.
        (asyncio_redis does not wait for Redis's confirmation, nor show it.)"""
        subscription = await self._connection.start_subscribe()
        await subscription.subscribe([*channels, self._probe])
        self._reader = asyncio.get_running_loop().create_task(self._read(subscription))
        while not self._live.done():
            await publish()
            with contextlib.suppress(asyncio.TimeoutError):
                await bounded(asyncio.shield(self._live), _PROBE_EVERY)
        self._live.result()  # raises if the connection was lost meanwhile

    async def _read(self, subscription: Any) -> None:
        probe = self._probe
        try:
            while True:
                reply = await subscription.next_published()
                if reply.channel == probe:
                    if not self._live.done():
                        self._live.set_result(None)
                    continue
                self._deliver(decode_key(reply.channel), reply.value, 0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._lost(exc)

    async def aclose(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        self._connection.protocol.synchro_lost = None
        self._connection.close()
        if not self._live.done():
            self._live.cancel()
        await super().aclose()


class AsyncioRedis(RedisInterface):
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

    def map_error(self, exc: Exception) -> SynchroError:
        """As the base does, and a Redis that answers but does not serve yet (``LOADING``
        its data after a restart, ``MASTERDOWN``) is unreachable too: redis-py raises its
        ConnectionError subclasses there, asyncio_redis a plain ErrorReply (which read as a
        SynchroError said nothing of the backend coming back)."""
        if _not_serving(exc, self._module.exceptions):
            return SynchroConnectionError(
                f"AsyncioRedis: Redis is not serving yet ({exc}); the operation was not "
                "applied, and it was not sent again"
            )
        return super().map_error(exc)

    # -- sessions -------------------------------------------------------------------------

    async def _new_pool(self) -> Any:
        creating = self._module.Pool.create(
            **self._options,
            encoder=self._module.encoders.BytesEncoder(),
            poolsize=self._poolsize,
            auto_reconnect=False,  # reconnection is ours: see _Session._renewed
            protocol_class=_protocol(self._module),
        )
        return await self._connecting(creating)

    async def _connecting(self, creating: Awaitable[T]) -> T:
        """``creating`` (a pool or a connection), bounded by the connect timeout."""
        try:
            return await bounded(creating, self._connect_timeout)
        except asyncio.TimeoutError:
            raise ConnectionRefusedError(
                f"no Redis at {self._options['host']}:{self._options['port']} "
                f"within {self._connect_timeout} s"
            ) from None

    async def open_session(self) -> _Session:
        return _Session(self, await self._new_pool(), self._max_batch, self._timeout)

    # -- notifications ----------------------------------------------------------------------

    async def raw_listen(self, channels: list[str], deliver: Deliver) -> Listener:
        """SUBSCRIBE on a connection of its own; live once a probe published on a channel
        of its own (in the same SUBSCRIBE) came back through it."""
        module = self._module
        creating = module.Connection.create(
            **self._options,
            encoder=module.encoders.BytesEncoder(),
            auto_reconnect=False,
            protocol_class=_protocol(module),
        )
        connection = await self._connecting(creating)
        probe = encode_key(channels[0]) + b"\x00probe\x00" + os.urandom(8).hex().encode()
        listener = _SubscriptionListener(connection, probe, deliver)

        async def publish_probe() -> None:
            session = self._sessions.current() or await self.session()
            await session.publish(probe, b"")

        try:
            await _bounded(
                listener.start([encode_key(c) for c in channels], publish_probe), self._timeout
            )
        except BaseException:
            await listener.aclose()
            raise
        return listener

    @property
    def endpoint(self) -> str:
        return "asyncio-redis://{host}:{port}/{db}".format(**self._options)

    def __repr__(self) -> str:
        return "AsyncioRedis({host}:{port}/{db})".format(**self._options)
