"""Memcache over several memcached servers: what ``Memcache(servers=[...])`` builds.

One single-server :class:`~.interface.Memcache` per server (its own clients, batchers and
generation, so ``clear()`` clears each server's part of the namespace on its own), and
:class:`~.rendezvous.Rendezvous` to pick the server of each key, in every process alike.
An operation on one key (a lock, a semaphore and a rate limit are keys too) goes to its
server alone: a server that is down fails the operations on its keys, with
SynchroConnectionError, and no other. Operations on several keys (``get_many``,
``update``, ``set_default``, ``delete``) are split per server and run in parallel; such an
operation fails if any of its servers fails, and the parts on other servers may have been
applied (as ``update`` on one memcached is key by key already). ``clear()`` runs on every
server. A pipeline sends each server its share in parallel.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ...batching import DEFAULT_MAX_BATCH, Outcome
from ...errors import SynchroError, SynchroValueError
from ...pipeline import Call, check_calls
from ...serializer import Serializer
from ..base import DEFAULT_TIMEOUT, RATE_MARK
from ..network import NetworkInterface
from .interface import MEMCACHE_MAX_VALUE_SIZE, Memcache
from .rendezvous import Rendezvous, check_servers

__all__ = ["ShardedMemcache"]

T = TypeVar("T")


class ShardedMemcache(Memcache):
    """The context spread over several memcached servers (build it as
    ``Memcache(servers=[(host, port), ...])``; a third item in a server's tuple weighs
    its share of the keys)."""

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
        checked = check_servers(servers)
        if host != "127.0.0.1" or port != 11211:
            raise SynchroValueError("Memcache takes host and port, or servers=, not both")
        self._servers = checked
        self._ring = Rendezvous(checked)
        self._shards = [
            Memcache(
                address,
                number,
                pool_size,
                prefix=prefix,
                serializer=serializer,
                max_value_size=max_value_size,
                timeout=timeout,
                batching=batching,
                max_batch=max_batch,
            )
            for address, number, _ in checked
        ]
        first = self._shards[0]
        self._module = first._module
        self._max_batch = first._max_batch
        self._timeout = first._timeout
        self._host, self._port, self._pool_size = first._host, first._port, pool_size
        self.connection_errors = first.connection_errors
        NetworkInterface.__init__(
            self, prefix=prefix, serializer=serializer, max_value_size=max_value_size
        )

    # -- the servers ------------------------------------------------------------------------

    @property
    def servers(self) -> list[tuple[str, int, float]]:
        """(host, port, weight) of every server."""
        return list(self._servers)

    def server_of(self, key: str) -> str:
        host, port, _ = self._servers[self._ring.pick(self._key(key))]
        return f"{host}:{port}"

    def _shard(self, key: str) -> Memcache:
        return self._shards[self._ring.pick(key)]

    def _split(self, keys: Sequence[str]) -> dict[int, list[int]]:
        """The positions of ``keys``, by the server that holds each."""
        groups: dict[int, list[int]] = {}
        pick = self._ring.pick
        for position, key in enumerate(keys):
            groups.setdefault(pick(key), []).append(position)
        return groups

    @staticmethod
    async def _all(calls: list[Awaitable[T]]) -> list[T]:
        """Await ``calls`` in parallel, each to its end; then raise the first failure."""
        results = await asyncio.gather(*calls, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results  # type: ignore[return-value]

    # -- namespace and life cycle -----------------------------------------------------------

    def bind(self, prefix: str) -> None:
        super().bind(prefix)
        for shard in self._shards:
            shard.bind(prefix)

    @property
    def batch_sizes(self) -> Counter[int]:
        total: Counter[int] = Counter()
        for shard in self._shards:
            total.update(shard.batch_sizes)
        return total

    async def ping(self) -> float:
        """The slowest server's read time: every server is read, in parallel (a server that
        is down raises SynchroConnectionError, as its keys would)."""
        return max(await self._all([shard.ping() for shard in self._shards]))

    async def run_pipeline(self, calls: Sequence[Call]) -> list[Outcome]:
        """Operations on one key each go out through their server's batcher, every server's
        share in one round trip (where memcached allows), the servers in parallel; an
        operation on keys of several servers (or on all: ``clear``) runs alone, after the
        operations before it, so that the pipeline keeps its order."""
        check_calls(calls)
        outcomes: list[Outcome] = [(False, SynchroValueError("not run"))] * len(calls)
        pending: dict[int, list[int]] = {}  # server -> positions, since the last lone call

        async def on_server(server: int, positions: list[int]) -> None:
            shard_calls = [calls[i] for i in positions]
            try:
                batcher = await self._shards[server].pipeline_batcher()
            except Exception as exc:  # its session could not open: nothing was sent
                error = exc if isinstance(exc, SynchroError) else self.map_error(exc)
                done = [(False, error)] * len(positions)
            else:
                done = await self.run_calls(batcher, shard_calls)
            for position, outcome in zip(positions, done, strict=True):
                outcomes[position] = outcome

        async def flush() -> None:
            if pending:
                groups = list(pending.items())
                pending.clear()
                await asyncio.gather(
                    *(on_server(server, positions) for server, positions in groups)
                )

        for position, call in enumerate(calls):
            server = self._server_of_call(call)
            if server is None:
                await flush()
                (outcomes[position],) = await self.run_calls(None, [call])
            else:
                pending.setdefault(server, []).append(position)
        await flush()
        return outcomes

    def _server_of_call(self, call: Call) -> int | None:
        """The server a pipeline's operation works on alone; None when it spans several
        (or names its key in a way this cannot tell: it then simply runs alone)."""
        name, args, _ = call
        if not args:  # the key given by keyword
            return None
        try:
            if name in ("get_many", "update", "set_default"):
                keys = list(args[0])
                if not keys:
                    return None
                servers = {self._ring.pick(self._key(key)) for key in keys}
                return servers.pop() if len(servers) == 1 else None
            if name == "delete":
                return self._ring.pick(self._key(args[0])) if len(args) == 1 else None
            if name == "rate_limit":
                return self._ring.pick(self._marked_key(RATE_MARK, args[0], "key"))
            if name == "locked":
                return self._ring.pick(self._lock_key(args[0]))
            if name in ("keys", "clear"):
                return None
            return self._ring.pick(self._key(args[0]))
        except Exception:  # a bad key: the operation fails on its own when it runs
            return None

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()

    def close_thread(self) -> None:
        for shard in self._shards:
            shard.close_thread()

    def close(self) -> None:
        for shard in self._shards:
            shard.close()

    # -- primitives: one key ----------------------------------------------------------------

    async def raw_get(self, key: str) -> bytes | None:
        return await self._shard(key).raw_get(key)

    async def raw_set(self, key: str, value: bytes, ttl: float | None) -> None:
        await self._shard(key).raw_set(key, value, ttl)

    async def raw_increment(self, key: str, by: int, ttl: float | None) -> int:
        return await self._shard(key).raw_increment(key, by, ttl)

    async def raw_replace(self, key: str, value: bytes) -> bytes | None:
        return await self._shard(key).raw_replace(key, value)

    async def raw_compare_and_set(
        self, key: str, expected: bytes, new: bytes, ttl: float | None
    ) -> bool:
        return await self._shard(key).raw_compare_and_set(key, expected, new, ttl)

    async def raw_expire(self, key: str, ttl: float | None) -> bool:
        return await self._shard(key).raw_expire(key, ttl)

    async def raw_ttl(self, key: str) -> float | None:
        return await self._shard(key).raw_ttl(key)

    async def raw_lock_acquire(self, key: str, token: str, ttl: float) -> tuple[str | None, int]:
        return await self._shard(key).raw_lock_acquire(key, token, ttl)

    async def raw_lock_release(self, key: str, token: str) -> bool:
        return await self._shard(key).raw_lock_release(key, token)

    async def raw_lock_extend(self, key: str, token: str, ttl: float) -> bool:
        return await self._shard(key).raw_lock_extend(key, token, ttl)

    async def raw_locked(self, key: str) -> bool:
        return await self._shard(key).raw_locked(key)

    async def raw_semaphore_acquire(self, key: str, token: str, limit: int, ttl: float) -> bool:
        return await self._shard(key).raw_semaphore_acquire(key, token, limit, ttl)

    async def raw_semaphore_release(self, key: str, token: str) -> bool:
        return await self._shard(key).raw_semaphore_release(key, token)

    async def raw_rate_limit(
        self, key: str, limit: int, per: float, cost: int
    ) -> tuple[bool, int, float, float]:
        return await self._shard(key).raw_rate_limit(key, limit, per, cost)

    # -- primitives: several keys, split per server -----------------------------------------

    async def _in_order(
        self, keys: list[str], part: Callable[[Memcache, list[int]], Awaitable[list[T]]]
    ) -> list[T]:
        """``part(server, positions)`` for each server's share of ``keys`` (in parallel),
        one answer per key, put back in the order of ``keys``."""
        groups = self._split(keys)
        if len(groups) == 1:
            ((server, positions),) = groups.items()
            return await part(self._shards[server], positions)
        answers = await self._all(
            [part(self._shards[server], positions) for server, positions in groups.items()]
        )
        ordered: list[Any] = [None] * len(keys)
        for positions, values in zip(groups.values(), answers, strict=True):
            for position, value in zip(positions, values, strict=True):
                ordered[position] = value
        return ordered

    async def raw_get_many(self, keys: list[str]) -> list[bytes | None]:
        return await self._in_order(
            keys, lambda shard, positions: shard.raw_get_many([keys[i] for i in positions])
        )

    async def raw_set_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> None:
        groups = self._split([key for key, _ in items])
        await self._all(
            [
                self._shards[server].raw_set_many([items[i] for i in positions], ttl)
                for server, positions in groups.items()
            ]
        )

    async def raw_add_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> list[bytes]:
        return await self._in_order(
            [key for key, _ in items],
            lambda shard, positions: shard.raw_add_many([items[i] for i in positions], ttl),
        )

    async def raw_delete(self, keys: list[str]) -> int:
        names = list(dict.fromkeys(keys))
        groups = self._split(names)
        counts = await self._all(
            [
                self._shards[server].raw_delete([names[i] for i in positions])
                for server, positions in groups.items()
            ]
        )
        return sum(counts)

    async def raw_clear(self, prefix: str) -> None:
        await self._all([shard.raw_clear(prefix) for shard in self._shards])

    # -- people -----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return "memcached://" + ",".join(f"{host}:{port}" for host, port, _ in self._servers)

    def __repr__(self) -> str:
        return "Memcache(" + ", ".join(f"{host}:{port}" for host, port, _ in self._servers) + ")"
