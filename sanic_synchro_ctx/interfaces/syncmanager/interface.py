"""SyncManager: the default interface, a manager process shared by all workers.

:meth:`~SyncManager.start` (Sanic's main process) starts a manager process (``python -m
sanic_synchro_ctx serve``) on an AF_UNIX socket in a private 0700 directory with a random
authkey, and hands its address and key to the workers, which :meth:`~SyncManager.attach`
to it. Each operation is one call of a Store method: one round trip, run inside the
manager under its lock. If the manager dies, a new one takes its place within about a
second (see :class:`~.process.SupervisedManager`): its store starts empty (the app's
defaults applied again), workers reconnect by themselves, and each hook given to
:meth:`~BaseSynchroInterface.on_reset` runs once a process meets the new store.

Without a hand-over it joins the manager of its group (workers whose ``init_app`` ran in
a listener meet at one keyed by their main process), or, where it is alone, keeps the
Store in this process for the interface's lifetime. With ``address`` and ``authkey`` (or
``authkey_file``) it connects to a manager started elsewhere, such as ``python -m
sanic_synchro_ctx serve``. ``timeout`` (default 5 s) bounds every wait: connecting, and
each answer; a manager that does not answer in time gives SynchroConnectionError.

The async front end batches (``batching=True``, the default): each event loop talks to the
manager on a connection of its own without blocking; under load the operations of its tasks
are queued and go out (up to ``max_batch`` at a time) as ONE call that runs them in order
inside the manager (see :mod:`~sanic_synchro_ctx.batching` for when a batch leaves). While
the loop is calm an operation is a direct call on the thread's blocking connection, when
it has one (connecting never happens on the loop: it runs in the background meanwhile).
The blocking front end calls directly.
"""

from __future__ import annotations

import asyncio
import os
import threading
from asyncio import events
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from typing import Any, NamedTuple, NoReturn, TypeVar

from ...batching import DEFAULT_MAX_BATCH, Batcher, Outcome, batch_limit
from ...bridge import run_inline
from ...checks import check_timeout
from ...errors import SynchroError, SynchroValueError
from ...notifications import Deliver, Listener
from ...pipeline import Call, check_calls
from ...serializer import Serializer
from ...sessions import LoopSessions
from ..base import DEFAULT_MAX_VALUE_SIZE, DEFAULT_TIMEOUT, BaseSynchroInterface
from ..storebacked import StoreBackedInterface, run_when_awaited
from .client import AsyncClient, BlockingClient, PushListener, open_subscription
from .process import AUTHKEY_ENV, SupervisedManager, read_authkey_file, rendezvous
from .store import Store
from .wire import Address, format_address

__all__ = ["SyncManager"]

T = TypeVar("T")
_Call = tuple[str, tuple[Any, ...]]
#: What workers receive from the main process: the manager's address and authkey.
Handover = tuple[Address, bytes]


class _LoopLink(NamedTuple):
    """One event loop's async connection to the manager, its batcher, and the blocking
    client (the manager address) they were made for."""

    client: BlockingClient
    batcher: Batcher[_Call]
    remote: AsyncClient


async def _close_link(link: _LoopLink) -> None:
    link.remote.close()


class _Blocking(threading.local):
    """Per thread: True while the blocking front end runs an operation in this thread;
    ``capturing`` while a blocking pipeline collects its operations' Store calls."""

    active = False  # a class default: reading it never raises (a miss costs an exception)
    capturing = False


class _Captured:
    """A Store call a blocking pipeline collected: awaiting it hands it to the pipeline's
    driver (:meth:`SyncManager._run_captured`), which sends it with the others and resumes
    the operation with its outcome."""

    __slots__ = ("call", "outcome")

    def __init__(self, call: _Call) -> None:
        self.call = call
        self.outcome: Outcome = (False, SynchroError("the pipeline did not send this call"))

    def __await__(self) -> Generator[Any, None, Any]:
        yield self
        ok, value = self.outcome
        if not ok:
            raise value
        return value


def _close_subscription(job: asyncio.Future[Any]) -> None:
    if not job.cancelled() and job.exception() is None:
        job.result()[0].close()


def _authkey(authkey: bytes | str | None, authkey_file: str | None) -> bytes:
    if authkey is not None and authkey_file is not None:
        raise SynchroValueError("give authkey= or authkey_file=, not both")
    if authkey_file is not None:
        return read_authkey_file(authkey_file)
    if authkey is None:
        from_env = os.environ.get(AUTHKEY_ENV, "").strip()
        if not from_env:
            raise SynchroValueError(
                "SyncManager(address=...) needs authkey=, authkey_file= or the "
                f"{AUTHKEY_ENV} environment variable"
            )
        return from_env.encode("utf-8")
    if isinstance(authkey, str):
        authkey = authkey.encode("utf-8")
    if not isinstance(authkey, bytes) or not authkey:
        raise SynchroValueError("authkey must be non-empty bytes or str")
    return authkey


class SyncManager(StoreBackedInterface):
    """The context in a manager process shared by every worker of the app (the default)."""

    connection_errors = (OSError, EOFError, asyncio.TimeoutError)

    def __init__(
        self,
        address: Address | None = None,
        authkey: bytes | str | None = None,
        *,
        authkey_file: str | None = None,
        prefix: str | None = None,
        serializer: Serializer | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        timeout: float | None = DEFAULT_TIMEOUT,
        batching: bool = True,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        super().__init__(prefix=prefix, serializer=serializer, max_value_size=max_value_size)
        self._timeout = check_timeout(timeout)
        self._max_batch = batch_limit(batching, max_batch)
        self._blocking = _Blocking()
        # per event loop: its async connection and batcher
        self._sessions: LoopSessions[_LoopLink] = LoopSessions(_close_link)
        self._connecting: set[asyncio.AbstractEventLoop] = set()
        self._pipeline_sizes: Counter[int] = Counter()
        self._unbatched = 0  # round trips of one operation outside the batchers
        if address is None and (authkey is not None or authkey_file is not None):
            raise SynchroValueError("authkey= and authkey_file= are only meaningful with address=")
        self._external = address is not None
        self._client: BlockingClient | None = None
        self._store: Store | None = None  # the Store of this process, where it is alone
        if address is not None:
            self._use(address, _authkey(authkey, authkey_file))
        self._manager: SupervisedManager | None = None
        self._instance: str | None = None
        self._instance_lock = threading.Lock()

    @property
    def address(self) -> Address | None:
        """The manager's address, or None while the Store lives in this process (or is unset)."""
        client = self._client
        return None if client is None else client.address

    @property
    def manager_pid(self) -> int | None:
        """The process id of the manager this interface started (None if it started none)."""
        return None if self._manager is None else self._manager.pid

    def _use(self, address: Address, authkey: bytes) -> None:
        self._client = BlockingClient(
            address, authkey, timeout=self._timeout, on_instance=self._met
        )

    def _met(self, instance: str) -> None:
        """A connection reached store ``instance``: a new one means the old store is gone."""
        with self._instance_lock:
            previous, self._instance = self._instance, instance
        if previous is not None and previous != instance:
            self._store_replaced()

    # -- calls ------------------------------------------------------------------------------

    def _backend(self) -> Store:
        store = self._store
        if store is not None:
            return store
        if self._client is None:
            _not_started()
        raise AssertionError("SyncManager calls its client through _call")

    def _call(self, method: str, *args: Any) -> Awaitable[Any]:
        store = self._store
        if store is not None:  # this process's own Store: a plain call
            return run_when_awaited(getattr(store, method), args)
        if self._blocking.capturing:  # a blocking pipeline collects its operations' calls
            return _Captured((method, args))
        client = self._client
        if client is None:
            _not_started()
        batcher = self._batcher()
        if batcher is None:  # blocking front end, or no batching
            self._unbatched += 1
            return run_when_awaited(self._backend_call(method), args)
        if client.connected():
            if batcher.direct():
                return run_when_awaited(self._backend_call(method), args)
        else:
            self._connect_in_background(client)
        return batcher.submit((method, args))

    def _backend_call(self, method: str) -> Callable[..., Any]:
        client = self._client
        if client is None:
            _not_started()

        def call(*args: Any) -> Any:
            return client.call(method, *args)

        return call

    def _connect_in_background(self, client: BlockingClient) -> None:
        """Open the loop thread's blocking connection off the loop (while the operations
        take the async path), so that calm operations can be direct calls again."""
        loop = events._get_running_loop()
        if loop is None or loop in self._connecting:
            return
        self._connecting.add(loop)
        job = loop.run_in_executor(None, client.open)

        def adopt(done: asyncio.Future[Any]) -> None:  # on the loop's thread
            self._connecting.discard(loop)
            if not done.cancelled() and done.exception() is None and client is self._client:
                client.adopt(*done.result())

        job.add_done_callback(adopt)

    # -- notifications ----------------------------------------------------------------------

    async def raw_listen(self, channels: list[str], deliver: Deliver) -> Listener:
        """A subscribed connection of its own to the manager, which pushes each message to
        it (no polling); read by the running loop."""
        if self._store is not None:
            return await super().raw_listen(channels, deliver)
        client = self._client
        if client is None:
            _not_started()
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(
            None, open_subscription, client.address, client.authkey, channels, self._timeout
        )
        try:
            sock, instance, buffer = await asyncio.shield(job)
        except asyncio.CancelledError:
            job.add_done_callback(_close_subscription)  # it may still connect: close that
            raise
        self._met(instance)
        return PushListener(sock, buffer, deliver)

    # -- batching (async front end) ---------------------------------------------------------

    def run_blocking(self, coro: Coroutine[Any, Any, T]) -> T:
        blocking = self._blocking
        blocking.active = True  # primitives call the manager directly, in this thread
        try:
            return run_inline(coro)
        finally:
            blocking.active = False

    def _batcher(self) -> Batcher[_Call] | None:
        if self._max_batch is None or self._blocking.active:
            return None
        link = self._sessions.current()
        if link is not None and link.client is self._client:
            return link.batcher
        if events._get_running_loop() is None:
            return None
        return self._link().batcher

    def _link(self) -> _LoopLink:
        """The running loop's async connection to the manager and its batcher (a new one
        when the manager's address changed)."""
        limit = self._max_batch
        client = self._client
        assert limit is not None
        assert client is not None
        stale = self._sessions.current()
        if stale is not None:
            stale.remote.close()
        loop = asyncio.get_running_loop()
        remote = AsyncClient(
            loop, client.address, client.authkey, timeout=self._timeout, on_instance=self._met
        )

        async def send_one(call: _Call) -> Any:
            return await remote.call(call[0], *call[1])

        async def send_many(calls: list[_Call]) -> list[Outcome]:
            outcomes: list[Outcome] = await remote.call("batch", calls)
            return outcomes

        return self._sessions.install(
            _LoopLink(client, Batcher(loop, send_one, send_many, limit, self._timeout), remote)
        )

    @property
    def batch_sizes(self) -> Counter[int]:
        """Round trips of the async front end and of blocking pipelines in this process,
        by operations carried."""
        return self._sessions.batch_sizes + self._pipeline_sizes

    def round_trip_sizes(self) -> Counter[int] | None:
        if self._store is not None or self._client is None:
            return None  # this process's own Store: nothing leaves the process
        sizes = self.batch_sizes
        if self._unbatched:
            sizes[1] += self._unbatched
        return sizes

    @property
    def endpoint(self) -> str:
        address = self.address
        if address is None:
            return "this process" if self._store is not None else "not started"
        return f"manager://{format_address(address)}"

    # -- pipelines --------------------------------------------------------------------------

    async def pipeline_batcher(self) -> Batcher[Any] | None:
        if self._store is not None or self._client is None:
            return None  # this process's own Store: nothing leaves the process
        return self._batcher()

    async def run_pipeline(self, calls: Sequence[Call]) -> list[Outcome]:
        client = self._client
        if self._store is None and client is not None and self._blocking.active:
            check_calls(calls)
            return self._run_captured(client, calls)
        return await super().run_pipeline(calls)

    def _run_captured(self, client: BlockingClient, calls: Sequence[Call]) -> list[Outcome]:
        """The blocking front end's pipeline: each operation runs until it awaits its Store
        call, which is collected instead of sent; the collected calls go out as ONE batch
        call (up to ``max_batch`` calls each), and each operation resumes with its own
        outcome (an operation needing a second call gets it in a later round)."""
        blocking = self._blocking
        coros = [getattr(self, name)(*args, **kwargs) for name, args, kwargs in calls]
        outcomes: list[Outcome] = [(False, SynchroError("not run"))] * len(coros)
        waiting: list[tuple[int, _Captured]] = []

        def advance(index: int) -> None:
            try:
                captured = coros[index].send(None)
            except StopIteration as stop:
                outcomes[index] = (True, stop.value)
                return
            except Exception as exc:
                outcomes[index] = (False, exc)
                return
            if not isinstance(captured, _Captured):
                raise AssertionError(f"a pipeline's operation awaited {captured!r}")
            waiting.append((index, captured))

        # the operations' Store calls are captured while they run (one flag for all of
        # them, not set and reset around each step), never while the batch goes out
        blocking.capturing = True
        try:
            for index in range(len(coros)):
                advance(index)
            limit = self._max_batch or DEFAULT_MAX_BATCH
            while waiting:
                round_trip, waiting = waiting[:limit], waiting[limit:]
                blocking.capturing = False
                try:
                    answers = client.call("batch", [captured.call for _, captured in round_trip])
                except Exception as exc:  # lost as a whole: each operation's effect unknown
                    answers = [(False, exc)] * len(round_trip)
                finally:
                    blocking.capturing = True
                self._pipeline_sizes[len(round_trip)] += 1
                for (index, captured), answer in zip(round_trip, answers, strict=True):
                    captured.outcome = answer
                    advance(index)
        finally:
            blocking.capturing = False
            for coro in coros:
                coro.close()
        return outcomes

    # -- life cycle -------------------------------------------------------------------------

    def start(self, seed: Callable[[BaseSynchroInterface], None] | None = None) -> Any:
        """Start a manager for the app's workers (unless ``address=`` names one) and
        return its address and authkey for them. ``seed`` fills each new manager's store
        before any worker can reach it: this one, and any that replaces it."""
        if self._external:
            return super().start(seed)
        if self._manager is not None:
            return (self._manager.address, self._manager.authkey)

        def seed_manager(address: Address, authkey: bytes) -> None:
            if seed is None:
                return
            sibling = SyncManager(
                address,
                authkey,
                prefix=self._namespace_name,
                serializer=self._serializer,
                max_value_size=self._max_value_size,
                timeout=self._timeout,
                batching=False,
            )
            try:
                seed(sibling)
            finally:
                sibling.close()

        self._manager = SupervisedManager(watch_pid=os.getpid(), seed=seed_manager)
        handover: Handover = (self._manager.address, self._manager.authkey)
        self.attach(handover)
        return handover

    def attach(self, handover: Any = None, *, group: int | None = None) -> None:
        if handover is not None:
            address, authkey = handover
            if self._client is None or self._client.address != address:
                self._use(address, authkey)
        elif self._client is not None or self._store is not None:
            return  # an external manager, or this process's Store from an earlier start
        elif group is not None:
            self._use(*rendezvous(group, timeout=self._timeout))
        else:
            self._store = Store()

    def stop(self) -> None:
        """Stop the manager this interface started (its data is gone)."""
        self.close()
        manager, self._manager = self._manager, None
        if manager is not None:
            manager.stop()
            self._client = None

    async def close_loop(self) -> None:
        await self._sessions.close_current()

    async def aclose(self) -> None:
        await self._sessions.close_current()
        client = self._client
        if client is not None:
            client.close()

    def close(self) -> None:
        """Drop this process's connections (the next operation connects again)."""
        for link in self._sessions.drop():
            link.remote.close()  # closes from any thread
        client = self._client
        if client is not None:
            client.close()

    def __repr__(self) -> str:
        client = self._client
        if client is not None:
            where = format_address(client.address)
        else:
            where = "in-process" if self._store is not None else "not started"
        return f"SyncManager({where})"


def _not_started() -> NoReturn:
    """The error of an operation on a SyncManager that is not started, on either front end
    (the async one said only ``AssertionError`` before)."""
    raise SynchroError(
        "SyncManager is not started: attach it to an app with Synchro(app) (its "
        "listeners start it), or give it the address= of a running manager"
    )
