"""Primitives for interfaces backed by a :class:`~sanic_synchro_ctx.store.Store`.

InMemory calls a Store in its own process; SyncManager calls one that lives in a manager
process, through a proxy with the same methods. Every primitive is one Store call, which
is one round trip for SyncManager. Called from the blocking front end (or with no running
loop) a primitive calls the Store directly and never suspends; from the async front end an
interface may hand the call to the running loop's :class:`~sanic_synchro_ctx.batching.Batcher`
instead (SyncManager does), so that concurrent operations share round trips.
"""

from __future__ import annotations

from typing import Any

from ..batching import Batcher
from ..store import Store
from .base import BaseSynchroInterface

__all__ = ["StoreBackedInterface"]


class StoreBackedInterface(BaseSynchroInterface):
    """Implements every primitive as one call of a Store method on :meth:`_backend`."""

    def _backend(self) -> Store:
        """The Store (or a manager client with the same methods) to call."""
        raise NotImplementedError

    def _batcher(self) -> Batcher[tuple[str, tuple[Any, ...]]] | None:
        """The running loop's batcher for this call, or None to call the Store directly."""
        return None

    async def _call(self, method: str, *args: Any) -> Any:
        batcher = self._batcher()
        if batcher is None:
            return getattr(self._backend(), method)(*args)
        return await batcher.submit((method, args))

    async def _get(self, key: str) -> bytes | None:
        result: bytes | None = await self._call("get", key)
        return result

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        result: list[bytes | None] = await self._call("get_many", keys)
        return result

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        await self._call("set", key, value, ttl)

    async def _set_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> None:
        await self._call("set_many", items, ttl)

    async def _add_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> list[bytes]:
        result: list[bytes] = await self._call("add_many", items, ttl)
        return result

    async def _delete(self, keys: list[str]) -> int:
        result: int = await self._call("delete", keys)
        return result

    async def _increment(self, key: str, by: int) -> int:
        result: int = await self._call("increment", key, by)
        return result

    async def _replace(self, key: str, value: bytes) -> bytes | None:
        result: bytes | None = await self._call("replace", key, value)
        return result

    async def _compare_and_set(
        self, key: str, expected: bytes, new: bytes, ttl: float | None
    ) -> bool:
        result: bool = await self._call("compare_and_set", key, expected, new, ttl)
        return result

    async def _expire(self, key: str, ttl: float | None) -> bool:
        result: bool = await self._call("expire", key, ttl)
        return result

    async def _ttl(self, key: str) -> float | None:
        result: float | None = await self._call("ttl", key)
        return result

    async def _keys(self, prefix: str) -> list[str]:
        result: list[str] = await self._call("keys", prefix)
        return result

    async def _clear(self, prefix: str) -> None:
        await self._call("clear", prefix)

    async def _lock_acquire(self, key: str, token: str, ttl: float) -> str | None:
        result: str | None = await self._call("lock_acquire", key, token, ttl)
        return result

    async def _lock_release(self, key: str, token: str) -> bool:
        result: bool = await self._call("lock_release", key, token)
        return result
