"""Explicit pipelines: operations queued in a block, sent together when it ends.

``async with synchro.pipeline() as p:`` (or ``with synchro.sync.pipeline() as p:``) gives
an object with the context's operations; each call only queues the operation and returns a
:class:`Handle`. When the block ends without an exception, the queue runs through
:meth:`~sanic_synchro_ctx.interfaces.base.BaseSynchroInterface.run_pipeline`, in as few
round trips as the backend allows, and each handle then holds its operation's own result or
its own error. An exception inside the block sends nothing.

Each operation is atomic on its own; the pipeline is not a transaction: other clients'
operations may run between two of them, and one failing does not undo the others.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .batching import Outcome
from .errors import SynchroError, SynchroValueError
from .operations import EVERYTHING, PIPELINED, touched

if TYPE_CHECKING:
    from .interfaces.base import BaseSynchroInterface
    from .ratelimit import RateLimit

__all__ = [
    "OPERATIONS",
    "BlockingPipeline",
    "Call",
    "Handle",
    "Pipeline",
    "check_calls",
    "in_pipeline",
    "waves",
]

T = TypeVar("T")
#: One queued operation: the interface's method name, its positional and keyword arguments.
Call = tuple[str, tuple[Any, ...], dict[str, Any]]

_QUEUED, _DONE, _NOT_RUN, _INTERRUPTED = 0, 1, 2, 3
_STATE_NAMES = {_QUEUED: "queued", _DONE: "done", _NOT_RUN: "not run", _INTERRUPTED: "interrupted"}

#: True while an operation runs as part of a pipeline (an interface may then issue it
#: differently: in one step where it would otherwise read something afterwards).
in_pipeline: ContextVar[bool] = ContextVar("synchro_in_pipeline", default=False)

#: The operations a pipeline queues (the interface's methods of these names run them):
#: the table's (operations.py).
OPERATIONS = PIPELINED


def check_calls(calls: Sequence[Call]) -> None:
    """SynchroValueError unless every call names an operation a pipeline runs."""
    for name, _, _ in calls:
        if name not in OPERATIONS:
            raise SynchroValueError(f"{name!r} is not an operation a pipeline can run")


class Handle(Generic[T]):
    """The result of one operation of a pipeline, once the pipeline ran.

    ``handle.result()`` (or ``await handle``) returns it, or raises the operation's own
    error. Read inside the block (before anything was sent) it raises SynchroError.
    """

    __slots__ = ("_name", "_ok", "_state", "_value")

    def __init__(self, name: str) -> None:
        self._name = name
        self._state = _QUEUED
        self._ok = False
        self._value: Any = None

    def _settle(self, outcome: Outcome) -> None:
        self._ok, self._value = outcome
        self._state = _DONE

    def done(self) -> bool:
        """Whether the pipeline ran and this operation has its result (or error)."""
        return self._state == _DONE

    def result(self) -> T:
        if self._state == _QUEUED:
            raise SynchroError(
                f"the pipeline's {self._name}() has not run yet: its result is there once "
                "the pipeline's block has ended"
            )
        if self._state == _NOT_RUN:
            raise SynchroError(
                f"the pipeline's {self._name}() never ran: the block ended with an exception, "
                "and nothing was sent"
            )
        if self._state == _INTERRUPTED:
            raise SynchroError(
                f"the pipeline was interrupted (cancelled) while it ran: the effect of its "
                f"{self._name}() is unknown (it may have been applied; it was not sent again)"
            )
        if not self._ok:
            raise self._value
        result: T = self._value
        return result

    def __await__(self) -> Generator[Any, None, T]:
        yield from ()  # a generator that never suspends: the result is already there
        return self.result()

    def __repr__(self) -> str:
        state = {
            _QUEUED: "queued",
            _DONE: "done",
            _NOT_RUN: "not run",
            _INTERRUPTED: "interrupted",
        }[self._state]
        return f"<Handle {self._name}() {state}>"


def _snapshot(collection: Any) -> Any:
    """The keys or items as they are when queued (a generator would be consumed later, a
    dict changed in between); anything else goes as it is, for the operation to refuse."""
    if isinstance(collection, Mapping):
        return dict(collection)
    if isinstance(collection, str | bytes) or not isinstance(collection, Iterable):
        return collection
    return list(collection)


class _Queue:
    """The operations of a pipeline: each one queued, answered by a :class:`Handle`."""

    __slots__ = ("_calls", "_handles", "_interface", "_open")

    def __init__(self, interface: BaseSynchroInterface) -> None:
        self._interface = interface
        self._calls: list[Call] = []
        self._handles: list[Handle[Any]] = []
        self._open = True

    def _queue(self, name: str, *args: Any, **kwargs: Any) -> Handle[Any]:
        if not self._open:
            raise SynchroError("this pipeline already ran: open a new one with pipeline()")
        handle: Handle[Any] = Handle(name)
        self._calls.append((name, args, kwargs))
        self._handles.append(handle)
        return handle

    def __len__(self) -> int:
        return len(self._calls)

    def _take(self) -> list[Call]:
        self._open = False
        return self._calls

    def _settle(self, outcomes: Sequence[Outcome]) -> None:
        for handle, outcome in zip(self._handles, outcomes, strict=True):
            handle._settle(outcome)

    def _abandon(self, state: int = _NOT_RUN) -> None:
        """Mark the handles left without a result: never sent (the block raised), or
        interrupted while the pipeline ran."""
        self._open = False
        for handle in self._handles:
            if handle._state == _QUEUED:
                handle._state = state

    # -- the operations (see the front ends for what each one does) -----------------------

    def get(self, key: str, default: Any = None) -> Handle[Any]:
        return self._queue("get", key, default)

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> Handle[None]:
        return self._queue("set", key, value, ttl=ttl)

    def delete(self, *keys: str) -> Handle[int]:
        return self._queue("delete", *keys)

    def get_many(self, keys: Iterable[str]) -> Handle[dict[str, Any]]:
        return self._queue("get_many", _snapshot(keys))

    def update(self, mapping: Mapping[str, Any], *, ttl: float | None = None) -> Handle[None]:
        return self._queue("update", _snapshot(mapping), ttl=ttl)

    def set_default(
        self, mapping: Mapping[str, Any], *, ttl: float | None = None
    ) -> Handle[dict[str, Any]]:
        return self._queue("set_default", _snapshot(mapping), ttl=ttl)

    def setdefault(self, key: str, value: Any, *, ttl: float | None = None) -> Handle[Any]:
        return self._queue("setdefault", key, value, ttl=ttl)

    def increment(self, key: str, by: int = 1, *, ttl: float | None = None) -> Handle[int]:
        return self._queue("increment", key, by, ttl=ttl)

    def decrement(self, key: str, by: int = 1, *, ttl: float | None = None) -> Handle[int]:
        return self._queue("decrement", key, by, ttl=ttl)

    def rate_limit(self, key: str, *, limit: int, per: float, cost: int = 1) -> Handle[RateLimit]:
        return self._queue("rate_limit", key, limit=limit, per=per, cost=cost)

    def replace(self, key: str, value: Any) -> Handle[Any]:
        return self._queue("replace", key, value)

    def compare_and_set(
        self, key: str, expected: Any, new: Any, *, ttl: float | None = None
    ) -> Handle[bool]:
        return self._queue("compare_and_set", key, expected, new, ttl=ttl)

    def expire(self, key: str, ttl: float | None) -> Handle[bool]:
        return self._queue("expire", key, ttl)

    def ttl(self, key: str) -> Handle[float | None]:
        return self._queue("ttl", key)

    def locked(self, name: str) -> Handle[bool]:
        return self._queue("locked", name)

    def keys(self) -> Handle[list[str]]:
        return self._queue("keys")

    def clear(self) -> Handle[None]:
        return self._queue("clear")


class Pipeline(_Queue):
    """``async with synchro.pipeline() as p:`` - the async front end's pipeline."""

    __slots__ = ()

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._abandon()
            return
        try:
            self._settle(await self._interface.run_pipeline(self._take()))
        finally:
            self._abandon(_INTERRUPTED)  # only those an interruption left without a result


class BlockingPipeline(_Queue):
    """``with synchro.sync.pipeline() as p:`` - the blocking front end's pipeline."""

    __slots__ = ()

    def __enter__(self) -> BlockingPipeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._abandon()
            return
        interface = self._interface
        try:
            self._settle(interface.run_blocking(interface.run_pipeline(self._take())))
        finally:
            self._abandon(_INTERRUPTED)


def waves(calls: Sequence[Call]) -> list[list[int]]:
    """Split ``calls`` into runs (indices) in which no two operations touch the same key,
    for backends that do not run a round trip's operations in the order they were sent:
    each run goes out together once the one before it has been answered, so operations on
    a key run in the order they were queued."""
    result: list[list[int]] = []
    current: list[int] = []
    seen: set[Any] = set()
    for index, call in enumerate(calls):
        try:
            keys = touched(call[0], call[1])
            clash = keys is EVERYTHING or "*" in seen or any(k in seen for k in keys)
        except (TypeError, IndexError):  # no keys (the operation fails on its own): alone
            clash, keys = True, EVERYTHING
        if clash and current:
            result.append(current)
            current, seen = [], set()
        current.append(index)
        seen.update(keys)
    if current:
        result.append(current)
    return result
