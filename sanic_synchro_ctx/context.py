"""The two front ends of one interface: what ``app.ctx.synchro`` and ``request.ctx.synchro`` hold.

:class:`SynchroContext` is the async front end: every method returns an awaitable, and
``await synchro.counter`` reads key ``"counter"``. :class:`BlockingSynchroContext` (``.sync``)
has the same names as plain calls, for ``def`` handlers and threads; ``.aio`` goes back.
Both call the very same interface operations; only the way they are run differs.
"""

from __future__ import annotations

from asyncio import current_task
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .errors import SynchroTypeError, SynchroValueError
from .globs import compile_glob
from .locks import AsyncLock, AsyncSemaphore, BlockingLock, BlockingSemaphore
from .notifications import DEFAULT_MAX_PENDING, BlockingSubscription, Subscription
from .pipeline import BlockingPipeline, Pipeline

if TYPE_CHECKING:
    from .interfaces.base import BaseSynchroInterface
    from .ratelimit import RateLimit

__all__ = ["BlockingSynchroContext", "SynchroContext", "blocking_handler"]

T = TypeVar("T")

#: The task that runs a plain ``def`` request handler, while it does (set by the
#: extension's request middleware). Such a handler cannot await: a call of the async front
#: end there would never run (nothing counted, only a "never awaited" warning in the log),
#: and an attribute read would hand back an awaitable instead of the value. It fails loudly.
blocking_handler: ContextVar[object] = ContextVar("synchro_blocking_handler", default=None)

#: Attribute names that tools probe on any object (error formatters, pretty printers,
#: array-aware debuggers): reading them never reaches the backend. ``get()`` reads such a key.
INTROSPECTED = frozenset({"dtype", "shape", "ndim", "model_fields", "model_config", "T"})


def _await_refused() -> None:
    """Raise if the calling task runs a plain ``def`` handler (it could not await)."""
    task = blocking_handler.get()
    if task is not None and task is current_task():
        raise SynchroTypeError(
            "app.ctx.synchro is the async front end: its operations must be awaited, which "
            "a plain def handler cannot do. In a def handler use request.ctx.synchro (the "
            "blocking front end there) or app.ctx.synchro.sync"
        )


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def _no_such_key(name: str) -> AttributeError:
    return AttributeError(f"no key {name!r} in the synchro context")


class _AttributeRead:
    """``await synchro.<name>``: created by attribute access, runs only when awaited."""

    __slots__ = ("_interface", "_name")

    def __init__(self, interface: BaseSynchroInterface, name: str) -> None:
        self._interface = interface
        self._name = name

    async def _read(self) -> Any:
        value = await self._interface.get(self._name, _MISSING)
        if value is _MISSING:
            raise _no_such_key(self._name)
        return value

    def __await__(self) -> Generator[Any, None, Any]:
        return self._read().__await__()


def _scan_options(match: str | None, count: int) -> Callable[[str], bool] | None:
    """Check scan()'s arguments (before anything is read); the key filter, if any."""
    if isinstance(count, bool) or not isinstance(count, int):
        raise SynchroTypeError(f"count must be an int, not {type(count).__name__}")
    if count < 1:
        raise SynchroValueError(f"count must be at least 1, not {count}")
    return None if match is None else compile_glob(match)


async def _scan(
    interface: BaseSynchroInterface, matches: Callable[[str], bool] | None, count: int
) -> AsyncIterator[str]:
    cursor = None
    while True:
        cursor, keys = await interface.scan_page(cursor, count, matches)
        for key in keys:
            yield key
        if cursor is None:
            return


def _scan_blocking(
    interface: BaseSynchroInterface, matches: Callable[[str], bool] | None, count: int
) -> Iterator[str]:
    cursor = None
    while True:
        cursor, keys = interface.run_blocking(interface.scan_page(cursor, count, matches))
        yield from keys
        if cursor is None:
            return


class SynchroContext:
    """Async front end: ``await synchro.increment("hits")``, ``async with synchro.lock("x")``."""

    __slots__ = ("_interface", "_sync")
    _interface: BaseSynchroInterface
    _sync: BlockingSynchroContext

    def __init__(self, interface: BaseSynchroInterface) -> None:
        object.__setattr__(self, "_interface", interface)
        object.__setattr__(self, "_sync", BlockingSynchroContext(interface, self))

    @property
    def interface(self) -> BaseSynchroInterface:
        return self._interface

    @property
    def sync(self) -> BlockingSynchroContext:
        """The blocking front end over the same interface."""
        return self._sync

    @property
    def aio(self) -> SynchroContext:
        return self

    async def __aenter__(self) -> SynchroContext:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """``async with connect(...) as ctx:`` closes this process's connections at the end."""
        await self._interface.aclose()

    def get(self, key: str, default: Any = None) -> Awaitable[Any]:
        """The value of ``key``, or ``default`` when it is missing (a stored None is returned)."""
        _await_refused()
        return self._interface.get(key, default)

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> Awaitable[None]:
        """Store ``value``; ``ttl`` seconds to live (None: no expiry, clearing any old one)."""
        _await_refused()
        return self._interface.set(key, value, ttl=ttl)

    def delete(self, *keys: str) -> Awaitable[int]:
        """Delete keys; returns how many existed."""
        _await_refused()
        return self._interface.delete(*keys)

    def get_many(self, keys: Iterable[str]) -> Awaitable[dict[str, Any]]:
        """The values of ``keys`` that exist (missing keys are left out)."""
        _await_refused()
        return self._interface.get_many(keys)

    def update(self, mapping: Mapping[str, Any], *, ttl: float | None = None) -> Awaitable[None]:
        """Store every item of ``mapping`` in one atomic step."""
        _await_refused()
        return self._interface.update(mapping, ttl=ttl)

    def set_default(
        self, mapping: Mapping[str, Any], *, ttl: float | None = None
    ) -> Awaitable[dict[str, Any]]:
        """Set each key that is missing; returns the value every key now holds."""
        _await_refused()
        return self._interface.set_default(mapping, ttl=ttl)

    def setdefault(self, key: str, value: Any, *, ttl: float | None = None) -> Awaitable[Any]:
        """Set ``key`` if it is missing; returns the value it now holds."""
        _await_refused()
        return self._interface.setdefault(key, value, ttl=ttl)

    def increment(self, key: str, by: int = 1, *, ttl: float | None = None) -> Awaitable[int]:
        """Atomically add ``by`` (a missing key counts as 0, and is created with ``ttl``
        in the same step; an existing key keeps its expiry); returns the new value."""
        _await_refused()
        return self._interface.increment(key, by, ttl=ttl)

    def decrement(self, key: str, by: int = 1, *, ttl: float | None = None) -> Awaitable[int]:
        """Atomically subtract ``by`` (as :meth:`increment`); returns the new value."""
        _await_refused()
        return self._interface.decrement(key, by, ttl=ttl)

    def rate_limit(
        self, key: str, *, limit: int, per: float, cost: int = 1
    ) -> Awaitable[RateLimit]:
        """One atomic GCRA step: may ``key`` spend ``cost`` of ``limit`` per ``per`` seconds?"""
        _await_refused()
        return self._interface.rate_limit(key, limit=limit, per=per, cost=cost)

    def replace(self, key: str, value: Any) -> Awaitable[Any]:
        """Atomically store ``value`` and return the previous one (None if missing)."""
        _await_refused()
        return self._interface.replace(key, value)

    def compare_and_set(
        self, key: str, expected: Any, new: Any, *, ttl: float | None = None
    ) -> Awaitable[bool]:
        """Store ``new`` only if ``key`` holds ``expected`` (compared as canonical JSON)."""
        _await_refused()
        return self._interface.compare_and_set(key, expected, new, ttl=ttl)

    def expire(self, key: str, ttl: float | None) -> Awaitable[bool]:
        """Set (or with None, remove) the expiry of an existing key; False if it is missing."""
        _await_refused()
        return self._interface.expire(key, ttl)

    def ttl(self, key: str) -> Awaitable[float | None]:
        """Seconds left to live, or None (no expiry, or no such key)."""
        _await_refused()
        return self._interface.ttl(key)

    def keys(self) -> Awaitable[list[str]]:
        """Every key of this namespace."""
        _await_refused()
        return self._interface.keys()

    def clear(self) -> Awaitable[None]:
        """Delete every key of this namespace (never anything else on a shared server)."""
        _await_refused()
        return self._interface.clear()

    def scan(self, match: str | None = None, *, count: int = 500) -> AsyncIterator[str]:
        """``async for key in synchro.scan("user:*")``: this namespace's keys, about
        ``count`` per round trip, never all at once. ``match``: a glob on the key. A key
        present for the whole scan comes exactly once; one added or deleted meanwhile
        may or may not."""
        _await_refused()
        return _scan(self._interface, _scan_options(match, count), count)

    def lock(
        self,
        name: str,
        *,
        ttl: float = 30.0,
        timeout: float | None = None,
        auto_renew: bool = False,
    ) -> AsyncLock:
        """A shared lock: ``async with synchro.lock("name", ttl=30, timeout=5):``."""
        _await_refused()
        return AsyncLock(self._interface, name, ttl=ttl, timeout=timeout, auto_renew=auto_renew)

    def locked(self, name: str) -> Awaitable[bool]:
        """Whether lock ``name`` is held now (by anyone)."""
        _await_refused()
        return self._interface.locked(name)

    def semaphore(
        self, name: str, limit: int, *, ttl: float = 30.0, timeout: float | None = None
    ) -> AsyncSemaphore:
        """At most ``limit`` holders across all processes: ``async with synchro.semaphore(...)``."""
        _await_refused()
        return AsyncSemaphore(self._interface, name, limit, ttl=ttl, timeout=timeout)

    def publish(self, channel: str, message: Any) -> Awaitable[int]:
        """Send ``message`` (a JSON value) to every subscriber of ``channel``, in every
        worker; how many received it (-1 where the backend cannot tell)."""
        _await_refused()
        return self._interface.publish(channel, message)

    def subscribe(self, *channels: str, max_pending: int = DEFAULT_MAX_PENDING) -> Subscription:
        """``async with synchro.subscribe("flags") as sub: async for channel, message in
        sub``: live inside the block; at most ``max_pending`` messages wait (the oldest is
        dropped, counted in ``sub.dropped``)."""
        _await_refused()
        return self._interface.subscribe(*channels, max_pending=max_pending)

    def pipeline(self) -> Pipeline:
        """Queue operations, send them together: ``async with synchro.pipeline() as p:``.

        Each operation called on ``p`` returns a handle; after the block, ``await handle``
        gives its result or raises its own error. The queue goes out in order, in one round
        trip where the backend allows; each operation is atomic on its own, the pipeline
        is not a transaction. An exception inside the block sends nothing."""
        _await_refused()
        return Pipeline(self._interface)

    def __getattr__(self, name: str) -> Awaitable[Any]:
        if name.startswith("_") or name in INTROSPECTED:
            raise AttributeError(name)
        _await_refused()
        return _AttributeRead(self._interface, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"the synchro context is read-only by attribute: use await synchro.set({name!r}, value)"
        )

    def __repr__(self) -> str:
        return f"<SynchroContext {self._interface!r} prefix={self._interface.prefix!r}>"


class _Runner(Protocol):
    def __call__(self, coro: Coroutine[Any, Any, T]) -> T: ...


class BlockingSynchroContext:
    """Blocking front end: ``synchro.sync.increment("hits")``, ``with synchro.sync.lock("x")``.

    On a thread that runs an event loop (a plain ``def`` Sanic handler) each call holds the
    whole worker for its round trip.
    """

    __slots__ = ("_aio", "_interface", "_run")
    _aio: SynchroContext
    _interface: BaseSynchroInterface
    #: Runs one operation to completion: the interface's ``run_blocking``, bound once
    #: (a method of this class calling it would be one more Python call per operation).
    _run: _Runner

    def __init__(self, interface: BaseSynchroInterface, aio: SynchroContext) -> None:
        object.__setattr__(self, "_interface", interface)
        object.__setattr__(self, "_aio", aio)
        object.__setattr__(self, "_run", interface.run_blocking)

    @property
    def interface(self) -> BaseSynchroInterface:
        return self._interface

    @property
    def aio(self) -> SynchroContext:
        """The async front end over the same interface."""
        return self._aio

    @property
    def sync(self) -> BlockingSynchroContext:
        return self

    def __enter__(self) -> BlockingSynchroContext:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """``with connect(...).sync as ctx:`` closes this thread's connections at the end."""
        self._interface.close()

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when it is missing (a stored None is returned)."""
        return self._run(self._interface.get(key, default))

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store ``value``; ``ttl`` seconds to live (None: no expiry, clearing any old one)."""
        self._run(self._interface.set(key, value, ttl=ttl))

    def delete(self, *keys: str) -> int:
        """Delete keys; returns how many existed."""
        return self._run(self._interface.delete(*keys))

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of ``keys`` that exist (missing keys are left out)."""
        return self._run(self._interface.get_many(keys))

    def update(self, mapping: Mapping[str, Any], *, ttl: float | None = None) -> None:
        """Store every item of ``mapping`` in one atomic step."""
        self._run(self._interface.update(mapping, ttl=ttl))

    def set_default(
        self, mapping: Mapping[str, Any], *, ttl: float | None = None
    ) -> dict[str, Any]:
        """Set each key that is missing; returns the value every key now holds."""
        return self._run(self._interface.set_default(mapping, ttl=ttl))

    def setdefault(self, key: str, value: Any, *, ttl: float | None = None) -> Any:
        """Set ``key`` if it is missing; returns the value it now holds."""
        return self._run(self._interface.setdefault(key, value, ttl=ttl))

    def increment(self, key: str, by: int = 1, *, ttl: float | None = None) -> int:
        """Atomically add ``by`` (a missing key counts as 0, and is created with ``ttl``
        in the same step; an existing key keeps its expiry); returns the new value."""
        return self._run(self._interface.increment(key, by, ttl=ttl))

    def decrement(self, key: str, by: int = 1, *, ttl: float | None = None) -> int:
        """Atomically subtract ``by`` (as :meth:`increment`); returns the new value."""
        return self._run(self._interface.decrement(key, by, ttl=ttl))

    def rate_limit(self, key: str, *, limit: int, per: float, cost: int = 1) -> RateLimit:
        """One atomic GCRA step: may ``key`` spend ``cost`` of ``limit`` per ``per`` seconds?"""
        return self._run(self._interface.rate_limit(key, limit=limit, per=per, cost=cost))

    def replace(self, key: str, value: Any) -> Any:
        """Atomically store ``value`` and return the previous one (None if missing)."""
        return self._run(self._interface.replace(key, value))

    def compare_and_set(
        self, key: str, expected: Any, new: Any, *, ttl: float | None = None
    ) -> bool:
        """Store ``new`` only if ``key`` holds ``expected`` (compared as canonical JSON)."""
        return self._run(self._interface.compare_and_set(key, expected, new, ttl=ttl))

    def expire(self, key: str, ttl: float | None) -> bool:
        """Set (or with None, remove) the expiry of an existing key; False if it is missing."""
        return self._run(self._interface.expire(key, ttl))

    def ttl(self, key: str) -> float | None:
        """Seconds left to live, or None (no expiry, or no such key)."""
        return self._run(self._interface.ttl(key))

    def keys(self) -> list[str]:
        """Every key of this namespace."""
        return self._run(self._interface.keys())

    def clear(self) -> None:
        """Delete every key of this namespace (never anything else on a shared server)."""
        self._run(self._interface.clear())

    def scan(self, match: str | None = None, *, count: int = 500) -> Iterator[str]:
        """``for key in synchro.sync.scan("user:*")``: this namespace's keys, about
        ``count`` per round trip, never all at once. ``match``: a glob on the key. A key
        present for the whole scan comes exactly once; one added or deleted meanwhile
        may or may not."""
        return _scan_blocking(self._interface, _scan_options(match, count), count)

    def lock(
        self,
        name: str,
        *,
        ttl: float = 30.0,
        timeout: float | None = None,
        auto_renew: bool = False,
    ) -> BlockingLock:
        """A shared lock: ``with synchro.sync.lock("name", ttl=30, timeout=5):``."""
        return BlockingLock(self._interface, name, ttl=ttl, timeout=timeout, auto_renew=auto_renew)

    def locked(self, name: str) -> bool:
        """Whether lock ``name`` is held now (by anyone)."""
        return self._run(self._interface.locked(name))

    def semaphore(
        self, name: str, limit: int, *, ttl: float = 30.0, timeout: float | None = None
    ) -> BlockingSemaphore:
        """At most ``limit`` holders across all processes: ``with synchro.sync.semaphore(...)``."""
        return BlockingSemaphore(self._interface, name, limit, ttl=ttl, timeout=timeout)

    def publish(self, channel: str, message: Any) -> int:
        """Send ``message`` (a JSON value) to every subscriber of ``channel``, in every
        worker; how many received it (-1 where the backend cannot tell)."""
        return self._run(self._interface.publish(channel, message))

    def subscribe(
        self, *channels: str, max_pending: int = DEFAULT_MAX_PENDING
    ) -> BlockingSubscription:
        """``with synchro.sync.subscribe("flags") as sub:`` then ``sub.get(timeout=1.0)``
        gives ``(channel, message)``, or None when nothing arrived in time. A thread of the
        subscription's own reads messages meanwhile; at most ``max_pending`` wait (the
        oldest is dropped, counted in ``sub.dropped``)."""
        interface = self._interface
        return BlockingSubscription(interface, interface.check_channels(channels), max_pending)

    def pipeline(self) -> BlockingPipeline:
        """Queue operations, send them together: ``with synchro.sync.pipeline() as p:``.

        Each operation called on ``p`` returns a handle; after the block,
        ``handle.result()`` gives its result or raises its own error. The queue goes out in
        order, in one round trip where the backend allows; each operation is atomic on its
        own, the pipeline is not a transaction. An exception inside the block sends nothing."""
        return BlockingPipeline(self._interface)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in INTROSPECTED:
            raise AttributeError(name)
        value = self._run(self._interface.get(name, _MISSING))
        if value is _MISSING:
            raise _no_such_key(name)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"the synchro context is read-only by attribute: use synchro.set({name!r}, value)"
        )

    def __repr__(self) -> str:
        return f"<BlockingSynchroContext {self._interface!r} prefix={self._interface.prefix!r}>"
