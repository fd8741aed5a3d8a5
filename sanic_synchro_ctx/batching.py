"""Automatic batching: operations issued while a round trip is in flight share the next one.

A :class:`Batcher` belongs to one event loop and has two modes.

*Calm* (one operation at a time): an operation goes out at once, alone (no timer, no added
latency when idle).

*Loaded*: once an operation had to wait behind a round trip in flight, operations are
queued, and up to ``max_batch`` of them leave together as ONE round trip (a manager call
running them in order, a Redis pipeline); each caller gets exactly its own result or its
own exception. A batch leaves at the end of a pass of the loop, after further passes as
long as each of them adds operations (at most :data:`GATHER_PASSES`), and only one round
trip is in flight at a time: what is issued meanwhile waits for the next one. After
:data:`CALM_AFTER` round trips in a row that carried one operation only, the loop counts as
calm again.

A caller cancelled while its operation still waits in the queue is simply skipped; one
cancelled while its batch is in flight has its result dropped. The batch itself runs in a
task of its own, so no caller's cancellation can interrupt a round trip half read.

Where a blocking call is cheaper than a trip through the event loop (a manager on a local
socket: the loop's extra wake-up costs more than the whole call), an interface asks
:meth:`Batcher.direct` first: while the loop is calm it then makes the call itself, blocking
the loop for one round trip as any blocking call would. A second task issuing an
operation in the same pass of the loop makes it loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
from asyncio import current_task
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from contextvars import Context, ContextVar, copy_context
from typing import Any, Generic, TypeVar

from .deadlines import bounded
from .errors import SynchroValueError

__all__ = ["DEFAULT_MAX_BATCH", "Batcher", "Outcome", "batch_limit", "total_sizes"]

#: Most operations sent in one round trip unless an interface is told otherwise.
DEFAULT_MAX_BATCH = 128
#: Round trips in a row that carried one operation only before the loop counts as calm.
CALM_AFTER = 32
#: Under load, most passes of the loop a batch waits for while each pass adds operations.
GATHER_PASSES = 8
#: Most direct calls in one pass of the loop: a task that issues operations one after the
#: other would otherwise never yield (a direct call does not), and keep the loop for ever.
DIRECT_PER_PASS = 16

Op = TypeVar("Op")
#: Which operation of a held run (:meth:`Batcher.run_held`) the running task works for.
_owner: ContextVar[object] = ContextVar("synchro_batch_owner", default=None)
#: What a batched round trip gives each operation: (True, result) or (False, exception).
Outcome = tuple[bool, Any]


def batch_limit(batching: object, max_batch: object) -> int | None:
    """Check an interface's ``batching``/``max_batch`` options: the bound, or None if off."""
    if not isinstance(batching, bool):
        raise SynchroValueError("batching must be True or False")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise SynchroValueError("max_batch must be a positive int")
    return max_batch if batching else None


def total_sizes(batchers: Iterable[Batcher[Any] | None]) -> Counter[int]:
    """Round trips of several batchers, by how many operations they carried."""
    total: Counter[int] = Counter()
    for batcher in batchers:
        if batcher is not None:
            total.update(batcher.sizes)
    return total


class Batcher(Generic[Op]):
    """Sends operations one at a time when idle and in batches under load, on one loop.

    ``send_one(op)`` performs one operation and returns its result (or raises).
    ``send_many(ops)`` performs several in order in one round trip and returns one
    :data:`Outcome` per operation; if it raises, every operation of that batch fails with
    that exception (the round trip as a whole was lost). ``sizes`` counts the round trips
    by how many operations they carried.
    """

    __slots__ = (
        "_alone_in_flight",
        "_busy",
        "_calm",
        "_direct_calls",
        "_drainer",
        "_held",
        "_held_owners",
        "_holding",
        "_issued",
        "_last_held",
        "_last_task",
        "_loop",
        "_lull",
        "_max",
        "_pass_directs",
        "_pass_marked",
        "_queue",
        "_release",
        "_send_many",
        "_send_one",
        "_sizes",
        "_timeout",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        send_one: Callable[[Op], Awaitable[Any]],
        send_many: Callable[[list[Op]], Awaitable[list[Outcome]]],
        max_batch: int,
        timeout: float | None = None,
    ) -> None:
        self._loop = loop
        #: Bound on a queued operation's whole wait, from the moment it is issued: the
        #: round trip in flight ahead of it and its own (else a stall cost it two timeouts:
        #: 503s took up to 2.2 s with timeout=1). A caller whose bound passes while its
        #: operation still waits in the queue leaves it there, never sent.
        self._timeout = timeout
        self._send_one = send_one
        self._send_many = send_many
        self._max = max_batch
        self._queue: deque[tuple[Op, asyncio.Future[Any]]] = deque()
        self._busy = False
        self._calm = True
        self._last_task: asyncio.Task[Any] | None = None
        self._pass_marked = False
        self._pass_directs = 0
        self._lull = 0
        self._drainer: asyncio.Task[None] | None = None  # held: the loop keeps only weak refs
        self._alone_in_flight = 0
        self._issued = False  # a lone operation was issued and has not started yet
        self._sizes: Counter[int] = Counter()
        self._direct_calls = 0  # an int: a Counter update costs more than the check itself
        # held (a pipeline gathering its operations): nothing leaves until released
        self._held = 0
        self._held_owners: set[object] = set()
        self._holding: asyncio.Event | None = None  # set when a held operation is queued
        self._last_held: asyncio.Future[Any] | None = None  # what a held run queued last
        self._release: asyncio.Future[None] | None = None

    @property
    def sizes(self) -> Counter[int]:
        """Round trips so far (direct calls included), by how many operations they carried."""
        sizes = self._sizes.copy()
        if self._direct_calls:
            sizes[1] += self._direct_calls
        return sizes

    def count_alone(self) -> None:
        """Count a round trip of one operation that went out without this batcher (a step
        the backend cannot batch), so that :attr:`sizes` counts every round trip."""
        self._direct_calls += 1

    @property
    def queued(self) -> int:
        """How many operations wait to be sent."""
        return len(self._queue)

    def submit(self, op: Op) -> Awaitable[Any]:
        """Run ``op``: in a round trip of its own if the loop is calm, else in the next batch.

        Decided here, when the operation is issued (not when the awaitable first runs: a
        caller may wrap it in a task or a timeout that starts it later): an operation
        issued while another one is in flight waits for the next round trip, and makes
        the loop loaded; so does one issued while a lone one was issued but not started
        yet (its caller wrapped it in a task). No mark per pass of the loop, as
        :meth:`direct` needs: its end-of-pass callback would cost every lone operation one
        more loop pass.
        """
        if self._busy or self._issued or not self._calm or self._held:
            future = self._enqueue(op)
            if self._timeout is None or self._held:  # a pipeline's: bounded per round trip
                return future
            return bounded(future, self._timeout)
        self._issued = True
        return self._alone(op)

    def direct(self) -> bool:
        """Whether the operation about to be issued may be run directly, by a blocking call.

        Yes while the loop is calm, nothing is in flight and no other task issued an
        operation in this pass of the loop (it then counts as a lone round trip). No makes
        the loop loaded when a second task of the pass asks: :meth:`submit` then queues.
        Kept to a few attribute reads: it runs before every operation of a calm loop.
        """
        if self._busy or self._issued or not self._calm or self._held or not self._first_of_pass():
            return False
        if self._pass_directs >= DIRECT_PER_PASS:
            return False  # the operation goes out as a round trip of the loop: it yields
        self._pass_directs += 1
        self._direct_calls += 1
        return True

    def _first_of_pass(self) -> bool:
        """False if another task already issued an operation in this pass of the loop (the
        loop is then loaded from now on)."""
        task = current_task(self._loop)
        if not self._pass_marked:
            self._pass_marked = True
            self._last_task = task
            self._loop.call_soon(self._end_of_pass)
        elif task is not self._last_task:
            self._calm = False  # two tasks in one pass: batch from now on
            self._lull = 0
            return False
        return True

    def _enqueue(self, op: Op) -> asyncio.Future[Any]:
        """Queue ``op`` for the next round trip (sent at the end of this pass if idle)."""
        future = self._loop.create_future()
        if self._held:
            self._held_owners.add(_owner.get())
            self._last_held = future
            if self._holding is not None:
                self._holding.set()
        elif self._calm:  # operations overlap: batch them from now on
            self._calm = False
            self._lull = 0
        self._queue.append((op, future))
        if not self._busy:  # else the round trip in flight starts the drain when it ends
            self._busy = True
            self._drainer = self._loop.create_task(self._drain())
        return future

    async def _alone(self, op: Op) -> Any:
        self._issued = False
        self._alone_in_flight += 1
        self._busy = True
        self._sizes[1] += 1
        try:
            return await self._send_one(op)
        finally:
            self._alone_in_flight -= 1
            if self._queue and self._drainer is None:
                self._drainer = self._loop.create_task(self._drain())
            elif self._drainer is None and not self._alone_in_flight:
                self._busy = False

    def _end_of_pass(self) -> None:
        self._pass_marked = False
        self._last_task = None
        self._pass_directs = 0

    def _take(self) -> list[tuple[Op, asyncio.Future[Any]]]:
        """Up to ``max_batch`` queued operations whose callers still wait for them."""
        queue = self._queue
        taken: list[tuple[Op, asyncio.Future[Any]]] = []
        while queue and len(taken) < self._max:
            entry = queue.popleft()
            if not entry[1].done():  # a caller cancelled while queued is dropped here
                taken.append(entry)
        return taken

    async def _gather(self) -> None:
        """Let the loop run while each of its passes adds operations to the queue.

        Under load, requests arrive over several passes of the loop; a batch sent as soon
        as the previous round trip returned would carry only the operations of one pass,
        and every round trip costs both processes a few system calls and wake-ups.
        """
        queue = self._queue
        queued = len(queue)
        for _ in range(GATHER_PASSES):
            if not queued or queued >= self._max:
                return
            await asyncio.sleep(0)
            if len(queue) == queued:
                return
            queued = len(queue)

    async def _drain(self) -> None:
        try:
            while True:
                await self._gather()
                while self._held:
                    if self._release is None:
                        self._release = self._loop.create_future()
                    await self._release
                batch = self._take()
                if not batch:
                    return
                size = len(batch)
                self._sizes[size] += 1
                if size > 1:
                    self._lull = 0
                else:
                    self._lull += 1
                    if self._lull >= CALM_AFTER:  # nobody queues any more: calm again
                        self._calm = True
                try:
                    if size == 1:
                        outcomes = [await self._outcome_of_one(batch[0][0])]
                    else:
                        outcomes = await self._send_many([op for op, _ in batch])
                except BaseException as exc:  # the round trip was lost: so is each answer
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue  # its caller was cancelled: the result is dropped
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._drainer = None
            self._busy = bool(self._alone_in_flight)
            # a lone operation issued but never started (its task was cancelled first)
            # must not keep the loop loaded for ever; one that still starts is harmless
            self._issued = False
            while self._queue:  # only if the drain itself was cancelled (loop shutting down)
                self._queue.popleft()[1].cancel()

    async def run_held(self, coros: list[Coroutine[Any, Any, Any]]) -> list[Outcome]:
        """Run ``coros`` (operations of this batcher's interface) so that their round trips
        leave together: each runs until it (or a task it started) queued an operation, or
        until it ended, and only then does the queue go out, in the order the operations
        were queued, up to ``max_batch`` per round trip. Later steps of an operation (a
        second command) go out as usual. Returns one :data:`Outcome` per coroutine.
        Cancelled, it cancels them all.

        Each coroutine runs in a context of its own. Its first step is driven right here:
        one that queues its operation in that step (the usual case: the checks, then one
        command) waits parked on the operation's future, with no task and no pass of the
        loop of its own; after the round trip it is driven on here, in order. Only one that
        waits for something else first (a connection being opened, tasks of its own) gets
        a task.
        """
        loop = self._loop
        self._held += 1
        if self._holding is None:
            self._holding = asyncio.Event()
        holding = self._holding
        held = self._held_owners
        outcomes: list[Outcome | None] = [None] * len(coros)
        parked: dict[int, tuple[Coroutine[Any, Any, Any], Context, asyncio.Future[Any]]] = {}
        tasks: dict[int, tuple[asyncio.Task[Any], object]] = {}
        try:
            for index, coro in enumerate(coros):
                owner = object()
                context = copy_context()
                context.run(_owner.set, owner)
                self._forget_last_held()
                try:
                    waiting = context.run(coro.send, None)
                except StopIteration as stop:
                    outcomes[index] = (True, stop.value)
                    continue
                except Exception as exc:
                    outcomes[index] = (False, exc)
                    continue
                queued = self._last_held
                if queued is not None and waiting is queued:
                    parked[index] = (coro, context, queued)
                    continue
                task = context.run(loop.create_task, _resume(coro, waiting))
                task.add_done_callback(lambda _: holding.set())
                tasks[index] = (task, owner)
            while any(not task.done() and owner not in held for task, owner in tasks.values()):
                holding.clear()
                await holding.wait()  # an operation queued, or one ended
        except BaseException:
            self._abandon(parked, tasks)
            raise
        finally:
            self._forget_last_held()
            self._unhold()
        try:
            for index in range(len(coros)):
                if index in tasks:
                    try:
                        outcomes[index] = (True, await tasks[index][0])
                    except Exception as exc:
                        outcomes[index] = (False, exc)
                elif index in parked:
                    coro, context, waiting = parked.pop(index)
                    outcomes[index] = await _finish(coro, context, waiting)
        except BaseException:
            self._abandon(parked, tasks)
            raise
        return [outcome for outcome in outcomes if outcome is not None]

    def _forget_last_held(self) -> None:
        # a method, not an assignment in run_held: there, mypy would take _last_held for
        # None ever after, not seeing that the coroutine step in between sets it
        self._last_held = None

    @staticmethod
    def _abandon(
        parked: dict[int, tuple[Coroutine[Any, Any, Any], Context, asyncio.Future[Any]]],
        tasks: dict[int, tuple[asyncio.Task[Any], object]],
    ) -> None:
        """A held run was cancelled: so is every operation of it."""
        for task, _ in tasks.values():
            task.cancel()
        for coro, context, waiting in parked.values():
            waiting.cancel()  # still queued: the round trip skips it
            with contextlib.suppress(BaseException):
                context.run(coro.close)
        parked.clear()

    def _unhold(self) -> None:
        self._held -= 1
        if self._held:
            return
        self._held_owners.clear()
        self._holding = None
        release, self._release = self._release, None
        if release is not None and not release.done():
            release.set_result(None)
        elif self._queue and not self._busy:
            self._busy = True
            self._drainer = self._loop.create_task(self._drain())

    async def _outcome_of_one(self, op: Op) -> Outcome:
        try:
            return (True, await self._send_one(op))
        except Exception as exc:
            return (False, exc)


async def _until_done(waiting: Any) -> None:
    """Wait for what a coroutine driven by hand yielded: a future (without taking its
    result: the coroutine reads it), or None (a bare yield: one pass of the loop)."""
    if waiting is None:
        await asyncio.sleep(0)
    elif not waiting.done():
        await asyncio.wait((waiting,))


def _plain(step: Callable[..., Any], *args: Any) -> Any:
    return step(*args)


async def _resume(
    coro: Coroutine[Any, Any, Any], waiting: Any, run: Callable[..., Any] = _plain
) -> Any:
    """Go on with ``coro``, whose step so far yielded ``waiting``, as a task would (a
    cancellation is thrown into it); ``run`` runs each step (``Context.run``: in the
    coroutine's own context)."""
    while True:
        try:
            await _until_done(waiting)
        except BaseException as exc:
            waiting = run(coro.throw, exc)
            continue
        try:
            waiting = run(coro.send, None)
        except StopIteration as stop:
            return stop.value


async def _finish(coro: Coroutine[Any, Any, Any], context: Context, waiting: Any) -> Outcome:
    """Drive ``coro`` (which yielded ``waiting``) to its end in its own ``context``."""
    try:
        return (True, await _resume(coro, waiting, context.run))
    except Exception as exc:
        return (False, exc)
