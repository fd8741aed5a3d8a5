"""Primitives for interfaces backed by a :class:`~sanic_synchro_ctx.store.Store`.

InMemory calls a Store in its own process; SyncManager calls one that lives in a manager
process, through a proxy with the same methods. Every primitive is one Store call, which
is one round trip for SyncManager. Called from the blocking front end (or with no running
loop) a primitive calls the Store directly and never suspends; from the async front end an
interface may hand the call to the running loop's :class:`~sanic_synchro_ctx.batching.Batcher`
instead (SyncManager does), so that concurrent operations share round trips; while the
loop is calm the batcher lets it call directly all the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..notifications import Deliver, Listener
from .base import BaseSynchroInterface

if TYPE_CHECKING:
    from .syncmanager.hub import Hub
    from .syncmanager.store import Store

__all__ = ["HubListener", "StoreBackedInterface", "run_when_awaited"]


async def run_when_awaited(method: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """A direct Store call, run when awaited (so it raises where it is awaited)."""
    return method(*args)


class HubListener(Listener):
    """A subscription to a Store's hub in this process: messages go straight from the
    publisher's thread into the subscriber's mailbox; no connection to lose."""

    def __init__(self, hub: Hub, channels: list[str], deliver: Deliver) -> None:
        super().__init__()
        self._hub = hub
        self._channels = channels
        self._deliver = deliver
        hub.add(channels, deliver)

    async def aclose(self) -> None:
        self._hub.remove(self._channels, self._deliver)
        await super().aclose()


class StoreBackedInterface(BaseSynchroInterface):
    """Implements every primitive as one call of a Store method on :meth:`_backend`."""

    notifies = True

    def _backend(self) -> Store:
        """The Store (or a manager client with the same methods) to call."""
        raise NotImplementedError

    def _call(self, method: str, *args: Any) -> Awaitable[Any]:
        """Call ``method`` of the Store (SyncManager: directly, or through the running
        loop's batcher)."""
        return run_when_awaited(getattr(self._backend(), method), args)

    def raw_get(self, key: str) -> Awaitable[bytes | None]:
        return self._call("get", key)

    def raw_get_many(self, keys: list[str]) -> Awaitable[list[bytes | None]]:
        return self._call("get_many", keys)

    def raw_set(self, key: str, value: bytes, ttl: float | None) -> Awaitable[None]:
        return self._call("set", key, value, ttl)

    def raw_set_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> Awaitable[None]:
        return self._call("set_many", items, ttl)

    def raw_add_many(
        self, items: list[tuple[str, bytes]], ttl: float | None
    ) -> Awaitable[list[bytes]]:
        return self._call("add_many", items, ttl)

    def raw_delete(self, keys: list[str]) -> Awaitable[int]:
        return self._call("delete", keys)

    def raw_increment(self, key: str, by: int, ttl: float | None) -> Awaitable[int]:
        return self._call("increment", key, by, ttl)

    def raw_replace(self, key: str, value: bytes) -> Awaitable[bytes | None]:
        return self._call("replace", key, value)

    def raw_compare_and_set(
        self, key: str, expected: bytes, new: bytes, ttl: float | None
    ) -> Awaitable[bool]:
        return self._call("compare_and_set", key, expected, new, ttl)

    def raw_expire(self, key: str, ttl: float | None) -> Awaitable[bool]:
        return self._call("expire", key, ttl)

    def raw_ttl(self, key: str) -> Awaitable[float | None]:
        return self._call("ttl", key)

    def raw_keys(self, prefix: str) -> Awaitable[list[str]]:
        return self._call("keys", prefix)

    def raw_scan(self, prefix: str, cursor: Any, count: int) -> Awaitable[tuple[Any, list[str]]]:
        return self._call("scan", prefix, cursor, count)

    def raw_clear(self, prefix: str) -> Awaitable[None]:
        return self._call("clear", prefix)

    def raw_lock_acquire(
        self, key: str, token: str, ttl: float
    ) -> Awaitable[tuple[str | None, int]]:
        return self._call("lock_acquire", key, token, ttl)

    def raw_lock_release(self, key: str, token: str) -> Awaitable[bool]:
        return self._call("lock_release", key, token)

    def raw_lock_extend(self, key: str, token: str, ttl: float) -> Awaitable[bool]:
        return self._call("lock_extend", key, token, ttl)

    def raw_locked(self, key: str) -> Awaitable[bool]:
        return self._call("locked", key)

    def raw_semaphore_acquire(
        self, key: str, token: str, limit: int, ttl: float
    ) -> Awaitable[bool]:
        return self._call("semaphore_acquire", key, token, limit, ttl)

    def raw_semaphore_release(self, key: str, token: str) -> Awaitable[bool]:
        return self._call("semaphore_release", key, token)

    def raw_rate_limit(
        self, key: str, limit: int, per: float, cost: int
    ) -> Awaitable[tuple[bool, int, float, float]]:
        return self._call("rate_limit", key, limit, per, cost)

    def raw_publish(self, channel: str, data: bytes) -> Awaitable[int]:
        return self._call("publish", channel, data)

    async def raw_listen(self, channels: list[str], deliver: Deliver) -> Listener:
        return HubListener(self._backend().hub, channels, deliver)
