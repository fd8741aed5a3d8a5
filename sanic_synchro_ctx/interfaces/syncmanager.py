"""SyncManager: the default interface, a manager process shared by all workers.

In ``main_process_start`` it starts a manager process (``python -m sanic_synchro_ctx
serve``) on an AF_UNIX socket in a private 0700 directory with a random authkey, and puts a
proxy to its Store into ``app.shared_ctx``; every worker picks the proxy up before it
serves. Each operation is one call of a Store method: one round trip, run inside the manager
under its lock. The manager stops in ``main_process_stop``.

Where no main process runs (``--single-process``, the sanic-testing clients, ASGI) the
Store lives in this process, created once and kept for the interface's lifetime. When
``init_app`` runs inside a worker's listener (no main-process listener was registered),
the workers of one main process meet at a manager keyed by that main process.
With ``address`` and ``authkey`` it connects to a manager started elsewhere, such as
``python -m sanic_synchro_ctx serve``. ``timeout`` bounds the wait for each answer
(default 30 s); a manager that does not answer in time gives SynchroConnectionError.

The async front end batches (``batching=True``, the default): each event loop talks to the
manager on a connection of its own without blocking; under load the operations of its tasks
are queued and go out (up to ``max_batch`` at a time) as ONE call that runs them in order
inside the manager (see :mod:`~sanic_synchro_ctx.batching` for when a batch leaves). While
the loop is calm an operation is a direct call. The blocking front end calls directly.
"""

from __future__ import annotations

import asyncio
import os
import threading
from asyncio import events
from collections import Counter
from collections.abc import Coroutine
from multiprocessing import AuthenticationError
from typing import TYPE_CHECKING, Any, TypeVar

from ..batching import DEFAULT_MAX_BATCH, Batcher, Outcome, batch_limit, total_sizes
from ..bridge import run_inline
from ..checks import check_timeout
from ..errors import SynchroError, SynchroValueError
from ..launcher import AUTHKEY_ENV, ManagerProcess, rendezvous
from ..manager import Address, AsyncStoreClient, StoreClient, connect, format_address
from ..serializer import Serializer
from ..store import Store
from .base import DEFAULT_MAX_VALUE_SIZE
from .storebacked import StoreBackedInterface

if TYPE_CHECKING:
    from sanic import Sanic

__all__ = ["SyncManager"]

T = TypeVar("T")
_Call = tuple[str, tuple[Any, ...]]

# Sanic names its server worker processes "Sanic-Server-<n>-<m>" (SANIC_WORKER_NAME).
_SERVER_WORKER_PREFIX = "Sanic-Server"


class _Blocking(threading.local):
    """Per thread: True while the blocking front end runs an operation in this thread."""

    active = False  # a class default: reading it never raises (a miss costs an exception)


def _in_server_worker() -> bool:
    return os.environ.get("SANIC_WORKER_NAME", "").startswith(_SERVER_WORKER_PREFIX)


def _authkey(authkey: bytes | str | None) -> bytes:
    if authkey is None:
        from_env = os.environ.get(AUTHKEY_ENV, "").strip()
        if not from_env:
            raise SynchroValueError(
                f"SyncManager(address=...) needs authkey= or the {AUTHKEY_ENV} environment variable"
            )
        return from_env.encode("utf-8")
    if isinstance(authkey, str):
        authkey = authkey.encode("utf-8")
    if not isinstance(authkey, bytes) or not authkey:
        raise SynchroValueError("authkey must be non-empty bytes or str")
    return authkey


class SyncManager(StoreBackedInterface):
    """The context in a manager process shared by every worker of the app (the default)."""

    connection_errors = (OSError, EOFError, AuthenticationError)

    def __init__(
        self,
        address: Address | None = None,
        authkey: bytes | str | None = None,
        *,
        prefix: str | None = None,
        serializer: Serializer | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        timeout: float | None = 30.0,
        batching: bool = True,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        super().__init__(prefix=prefix, serializer=serializer, max_value_size=max_value_size)
        self._timeout = check_timeout(timeout)
        self._max_batch = batch_limit(batching, max_batch)
        self._blocking = _Blocking()
        # per event loop: the StoreClient it was made for, its batcher and async client
        self._batchers: dict[
            asyncio.AbstractEventLoop, tuple[StoreClient, Batcher[_Call], AsyncStoreClient]
        ] = {}
        self._recent: tuple[asyncio.AbstractEventLoop, Any, Batcher[_Call] | None] | None = None
        if address is None and authkey is not None:
            raise SynchroValueError("authkey= is only meaningful with address=")
        self._external = address is not None
        self._endpoint: tuple[Address, bytes] | None = (
            (address, _authkey(authkey)) if address is not None else None
        )
        self._store: Store | StoreClient | None = None
        self._process: ManagerProcess | None = None
        self._mutex = threading.Lock()

    @property
    def address(self) -> Address | None:
        """The manager's address, or None while the Store lives in this process (or is unset)."""
        return None if self._endpoint is None else self._endpoint[0]

    def _backend(self) -> Store:
        store = self._store
        if store is None:
            store = self._resolve()
        # A StoreClient has the Store's methods, run in the manager process.
        return store  # type: ignore[return-value]

    def _resolve(self) -> Store | StoreClient:
        with self._mutex:
            if self._store is None:
                if self._endpoint is not None:
                    self._store = connect(*self._endpoint, timeout=self._timeout)
                elif _in_server_worker():
                    # A private Store here would silently diverge from the other workers.
                    raise SynchroError(
                        "SyncManager was used in a Sanic worker before the server started; "
                        "use it from listeners (before_server_start onwards) and handlers"
                    )
                else:
                    self._store = Store()
            return self._store

    # -- batching (async front end) ---------------------------------------------------------

    def run_blocking(self, coro: Coroutine[Any, Any, T]) -> T:
        blocking = self._blocking
        blocking.active = True  # primitives call the Store directly, in this thread
        try:
            return run_inline(coro)
        finally:
            blocking.active = False

    def _batcher(self) -> Batcher[_Call] | None:
        if self._max_batch is None or self._blocking.active:
            return None
        loop = events._get_running_loop()
        if loop is None:
            return None
        recent = self._recent
        if recent is not None and recent[0] is loop and recent[1] is self._store:
            return recent[2]
        return self._batcher_for(loop)

    def _batcher_for(self, loop: asyncio.AbstractEventLoop) -> Batcher[_Call] | None:
        limit = self._max_batch
        assert limit is not None  # only asked for with batching on
        store: Any = self._backend()
        batcher = None
        if isinstance(store, StoreClient):  # a Store of this process needs no batching
            entry = self._batchers.get(loop)
            if entry is not None and entry[0] is store:
                batcher = entry[1]
            else:
                if entry is not None:
                    entry[2].close()
                for closed in [other for other in self._batchers if other.is_closed()]:
                    self._batchers.pop(closed)[2].close()
                client = AsyncStoreClient(
                    loop, store.address, store.authkey, store.ident, timeout=self._timeout
                )

                async def send_one(call: _Call) -> Any:
                    return await client.call(call[0], *call[1])

                async def send_many(calls: list[_Call]) -> list[Outcome]:
                    outcomes: list[Outcome] = await client.call("batch", calls)
                    return outcomes

                batcher = Batcher(loop, send_one, send_many, limit)
                self._batchers[loop] = (store, batcher, client)
        self._recent = (loop, store, batcher)
        return batcher

    @property
    def batch_sizes(self) -> Counter[int]:
        """Round trips of the async front end in this process, by operations carried."""
        return total_sizes(batcher for _, batcher, _ in list(self._batchers.values()))

    def _close_batchers(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Close the async connections (of ``loop`` only, if given)."""
        for other in list(self._batchers):
            if loop is None or other is loop:
                self._batchers.pop(other)[2].close()
        self._recent = None

    def map_error(self, exc: Exception) -> SynchroError:
        if isinstance(exc, self.connection_errors) and self._endpoint is not None:
            self._store = None  # reconnect (and look the Store up again) on the next operation
        return super().map_error(exc)

    def _attach(self, proxy: Any) -> None:
        client = StoreClient.from_proxy(proxy, timeout=self._timeout)
        self._endpoint = (client.address, client.authkey)
        self._store = client

    # -- lifecycle ----------------------------------------------------------------------

    def on_main_process_start(self, app: Sanic[Any, Any], slot: str) -> None:
        if self._external:
            return
        self._process = ManagerProcess.start(watch_pid=os.getpid())
        self._endpoint = (self._process.address, self._process.authkey)
        client = connect(*self._endpoint, timeout=self._timeout)
        self._store = client
        setattr(app.shared_ctx, slot, client.proxy)

    def on_main_process_stop(self, app: Sanic[Any, Any], slot: str) -> None:
        self.close()

    def on_server_start(self, app: Sanic[Any, Any], slot: str) -> None:
        shared = getattr(app.shared_ctx, slot, None)
        if shared is not None:
            self._attach(shared)
        elif self._endpoint is not None or self._store is not None:
            return  # an external manager, or this process's Store from an earlier start
        elif _in_server_worker():
            self._endpoint = rendezvous(os.getppid())
            self._resolve()
        else:
            self._store = Store()

    async def on_server_stop(self, app: Sanic[Any, Any], slot: str) -> None:
        loop = events._get_running_loop()
        if loop is not None:
            self._close_batchers(loop)

    def close(self) -> None:
        """Drop the connection (the next operation reconnects); stop a manager we started."""
        self._close_batchers()
        store, self._store = self._store, None
        if isinstance(store, StoreClient):
            store.close()
        elif store is not None:
            self._store = store  # this process's own Store: its data lives on
        process, self._process = self._process, None
        if process is not None:
            self._store = None
            self._endpoint = None
            process.stop()

    def __repr__(self) -> str:
        if self._endpoint is None:
            where = "in-process" if self._store is not None else "not started"
        else:
            where = format_address(self._endpoint[0])
        return f"SyncManager({where})"
