"""Present the blocking front end with the async front end's shape.

The contract suite is written once, against ``await ctx.op(...)``; wrapped this way the
blocking front end runs each call right where the test awaits it (on the event loop's
thread, as in a plain ``def`` Sanic handler).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

from sanic_synchro_ctx.context import BlockingSynchroContext
from sanic_synchro_ctx.locks import BlockingLock, BlockingSemaphore
from sanic_synchro_ctx.notifications import BlockingSubscription
from sanic_synchro_ctx.pipeline import BlockingPipeline

# Waiting acquires occupy a thread each; a small pool would starve the holder's release.
_lock_threads = ThreadPoolExecutor(max_workers=64, thread_name_prefix="lock-view")


async def _in_thread(func: Callable[[], None], interface: Any) -> None:
    """``func()`` on a pool thread; that thread's client is closed afterwards (pool threads
    outlive the test's interface: each would keep a client of every test open)."""

    def call() -> None:
        try:
            func()
        finally:
            interface.close_thread()

    await asyncio.get_running_loop().run_in_executor(_lock_threads, call)


class AsyncLockView:
    """A blocking lock or semaphore with the async shape: its waits and round trips run on a
    worker thread, as a threaded blocking caller would run them; properties read through."""

    def __init__(self, lock: BlockingLock | BlockingSemaphore, interface: Any) -> None:
        self.lock = lock
        self.interface = interface  # whose per-thread clients the pool threads close

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lock, name)

    async def acquire(self) -> None:
        await _in_thread(self.lock.acquire, self.interface)

    async def release(self) -> None:
        await _in_thread(self.lock.release, self.interface)

    async def extend(self, ttl: float | None = None) -> None:
        lock = self.lock
        assert isinstance(lock, BlockingLock)
        await _in_thread(lambda: lock.extend(ttl), self.interface)

    async def __aenter__(self) -> AsyncLockView:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.release()


class BlockingPipelineView:
    """A blocking pipeline used with ``async with`` (its block ends with a blocking call,
    right there); its handles are awaitable as they are."""

    def __init__(self, pipeline: BlockingPipeline) -> None:
        self.pipeline = pipeline

    async def __aenter__(self) -> BlockingPipeline:
        return self.pipeline.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.pipeline.__exit__(exc_type, exc, tb)


class BlockingSubscriptionView:
    """A blocking subscription used with ``async with``; ``await sub.get(timeout)`` waits
    on a worker thread (a blocking caller's wait), so the test's loop keeps running."""

    def __init__(self, subscription: BlockingSubscription) -> None:
        self.subscription = subscription

    def __getattr__(self, name: str) -> Any:
        return getattr(self.subscription, name)

    async def get(self, timeout: float | None = None) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            _lock_threads, self.subscription.get, timeout
        )

    async def __aenter__(self) -> BlockingSubscriptionView:
        self.subscription.__enter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.subscription.__exit__(exc_type, exc, tb)


class BlockingAsAsync:
    def __init__(self, blocking: BlockingSynchroContext) -> None:
        self.sync = blocking

    @property
    def interface(self) -> Any:
        return self.sync.interface

    def lock(self, *args: Any, **kwargs: Any) -> AsyncLockView:
        return AsyncLockView(self.sync.lock(*args, **kwargs), self.sync.interface)

    def semaphore(self, *args: Any, **kwargs: Any) -> AsyncLockView:
        return AsyncLockView(self.sync.semaphore(*args, **kwargs), self.sync.interface)

    def scan(self, *args: Any, **kwargs: Any) -> AsyncIterator[str]:
        keys = self.sync.scan(*args, **kwargs)  # arguments checked now, as the async one does

        async def each() -> AsyncIterator[str]:
            for key in keys:
                yield key

        return each()

    def pipeline(self) -> BlockingPipelineView:
        return BlockingPipelineView(self.sync.pipeline())

    def subscribe(self, *channels: str, **options: Any) -> BlockingSubscriptionView:
        return BlockingSubscriptionView(self.sync.subscribe(*channels, **options))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        method = getattr(type(self.sync), name, None)
        if callable(method):
            bound: Callable[..., Any] = getattr(self.sync, name)

            async def call(*args: Any, **kwargs: Any) -> Any:
                return bound(*args, **kwargs)

            return call
        return self.read(name)

    def read(self, name: str) -> Awaitable[Any]:
        class Read:
            def __await__(inner: Any) -> Any:
                async def read() -> Any:
                    return getattr(self.sync, name)

                return read().__await__()

        return Read()
