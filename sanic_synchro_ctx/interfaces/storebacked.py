"""Primitives for interfaces backed by a :class:`~sanic_synchro_ctx.store.Store`.

InMemory calls a Store in its own process; SyncManager calls one that lives in a manager
process, through a proxy with the same methods. Every primitive is one Store call, which
is one round trip for SyncManager, and none of them ever suspends.
"""

from __future__ import annotations

from ..store import Store
from .base import BaseSynchroInterface

__all__ = ["StoreBackedInterface"]


class StoreBackedInterface(BaseSynchroInterface):
    """Implements every primitive as one call of a Store method on :meth:`_backend`."""

    def _backend(self) -> Store:
        """The Store (or a manager proxy with the same methods) to call."""
        raise NotImplementedError

    async def _get(self, key: str) -> bytes | None:
        return self._backend().get(key)

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return self._backend().get_many(keys)

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        self._backend().set(key, value, ttl)

    async def _set_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> None:
        self._backend().set_many(items, ttl)

    async def _add_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> list[bytes]:
        return self._backend().add_many(items, ttl)

    async def _delete(self, keys: list[str]) -> int:
        return self._backend().delete(keys)

    async def _increment(self, key: str, by: int) -> int:
        return self._backend().increment(key, by)

    async def _replace(self, key: str, value: bytes) -> bytes | None:
        return self._backend().replace(key, value)

    async def _compare_and_set(
        self, key: str, expected: bytes, new: bytes, ttl: float | None
    ) -> bool:
        return self._backend().compare_and_set(key, expected, new, ttl)

    async def _expire(self, key: str, ttl: float | None) -> bool:
        return self._backend().expire(key, ttl)

    async def _ttl(self, key: str) -> float | None:
        return self._backend().ttl(key)

    async def _keys(self, prefix: str) -> list[str]:
        return self._backend().keys(prefix)

    async def _clear(self, prefix: str) -> None:
        self._backend().clear(prefix)

    async def _lock_acquire(self, key: str, token: str, ttl: float) -> str | None:
        return self._backend().lock_acquire(key, token, ttl)

    async def _lock_release(self, key: str, token: str) -> bool:
        return self._backend().lock_release(key, token)
