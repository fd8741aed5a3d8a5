"""BaseSynchroInterface: the contract every interface fulfils.

Each public operation does the common work once (check and prefix keys, serialize values,
check TTLs and steps, map client errors into the SynchroError tree) and then awaits one
small primitive (``raw_get``, ``raw_increment``, ...) that each interface implements.
Primitives receive prefixed keys and serialized bytes and must run their operation
atomically. The docs page "Writing an interface" shows a complete one.

Operations are coroutines. For an interface whose primitives never suspend, the blocking
front end drives them to completion in the caller's thread (:meth:`run_blocking`); network
interfaces override :meth:`run_blocking` to use the bridge.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any, ClassVar, ParamSpec, TypeVar

from ..batching import Batcher, Outcome
from ..bridge import run_inline
from ..checks import (
    INT64_MAX,
    INT64_MIN,
    MAX_KEY_LENGTH,
    MAX_TTL,
    check_key,
    check_keys,
    check_lease,
    check_mapping,
    check_step,
    check_ttl,
)
from ..errors import (
    SynchroConnectionError,
    SynchroError,
    SynchroTypeError,
    SynchroUnsupported,
    SynchroValueError,
)
from ..notifications import DEFAULT_MAX_PENDING, Deliver, Listener, Subscription, check_max_pending
from ..pipeline import Call, check_calls, in_pipeline, waves
from ..ratelimit import MAX_PER_SECOND, RateLimit, check_rate
from ..serializer import JSONSerializer, Serializer
from ..stats import NullRecorder, Recorder

_log = logging.getLogger("sanic_synchro_ctx")

__all__ = [
    "DEFAULT_MAX_VALUE_SIZE",
    "DEFAULT_TIMEOUT",
    "LOCK_MARK",
    "RATE_MARK",
    "SEMAPHORE_MARK",
    "CHANNEL_MARK",
    "BaseSynchroInterface",
    "namespace_head",
]

#: Largest serialized value accepted, in bytes (memcached's default item size).
DEFAULT_MAX_VALUE_SIZE = 1_048_576
#: Seconds every network interface waits for an answer unless told otherwise.
DEFAULT_TIMEOUT = 5.0
#: Semaphores and rate limits have key spaces of their own, like locks.
SEMAPHORE_MARK = "\x00semaphore\x00"
RATE_MARK = "\x00rate\x00"
#: Lock keys are ``LOCK_MARK + prefix + name``: never equal to a data key ``prefix + key``.
LOCK_MARK = "\x00lock\x00"
#: Channels are ``CHANNEL_MARK + prefix + channel``: namespaced like keys.
CHANNEL_MARK = "\x00channel\x00"


def namespace_head(namespace: str) -> str:
    """What every key of ``namespace`` starts with: the namespace with ``%`` and ``:``
    escaped, then ``:``. Its only ``:`` is its last character, so no namespace's head is the
    start of another's ("app" and "app2" never reach into each other's keys)."""
    return namespace.replace("%", "%25").replace(":", "%3A") + ":"


P = ParamSpec("P")
T = TypeVar("T")
I = TypeVar("I", bound="BaseSynchroInterface")  # noqa: E741


async def _pipelined(operation: Coroutine[Any, Any, T]) -> T:
    """Run ``operation`` (in a task of its own) marked as part of a pipeline."""
    in_pipeline.set(True)  # in this task's own context only
    return await operation


def _step_error(key: str, exc: SynchroTypeError | SynchroValueError) -> SynchroError:
    """The error of a refused increment, naming the key."""
    if isinstance(exc, SynchroTypeError):
        return SynchroTypeError(f"cannot increment {key!r}: {exc}")
    return SynchroValueError(f"cannot increment {key!r}: {exc}")


class BaseSynchroInterface(ABC):
    """The contract of every interface: the public operations, on abstract primitives.

    A subclass implements the ``raw_*`` primitives (abstract: a subclass missing one fails
    at instantiation with TypeError naming it) and declares its capabilities as class
    attributes; the operations here do the common work and call them.

    Options shared by every interface:

    ``prefix``
        Prepended to every key. By default :class:`~sanic_synchro_ctx.Synchro` derives one
        from the app name and its own name, so that two apps, or two Synchro objects on one
        app, never see each other's keys.
    ``serializer``
        How values become bytes: :class:`~sanic_synchro_ctx.serializer.JSONSerializer` by
        default; a signed :class:`~sanic_synchro_ctx.serializer.PickleSerializer` on request.
    ``max_value_size``
        Largest serialized value, in bytes (default 1 MiB); larger raises SynchroValueError.
    """

    #: How finely expiry works, in seconds: ``ttl()`` may answer up to this much above the
    #: TTL asked for (a value never expires before its TTL). 0: exact.
    ttl_resolution: ClassVar[float] = 0.0
    #: False where ``keys()`` raises SynchroUnsupported (memcached cannot list keys).
    lists_keys: ClassVar[bool] = True
    #: Whether publish/subscribe works: the backend pushes messages to subscribers (False:
    #: ``publish``/``subscribe`` raise SynchroUnsupported; memcached has no channels).
    notifies: ClassVar[bool] = False
    #: False where every process holds its own copy (InMemory): the extension then warns
    #: when the app runs several workers.
    shares_between_processes: ClassVar[bool] = True
    #: Whether the backend runs the operations of one round trip in the order they were
    #: sent. Where it does not (memcached; a Redis Cluster, whose nodes answer apart), a
    #: pipeline sends operations on one key in separate round trips, in order.
    ordered_batches: bool = True
    #: Client exceptions meaning "the backend is unreachable": mapped to SynchroConnectionError.
    #: Interfaces importing their client lazily set it per instance.
    connection_errors: tuple[type[BaseException], ...] = ()
    #: Most operations per batched round trip; None where operations are not batched.
    _max_batch: int | None = None
    #: The interface's own bound on each wait for its backend, in seconds; None where it
    #: sets none (operations that never wait; a client that bounds its own waits).
    _timeout: float | None = None

    def __init__(
        self,
        *,
        prefix: str | None = None,
        serializer: Serializer | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
    ) -> None:
        if prefix is not None:
            if not isinstance(prefix, str) or not prefix:
                raise SynchroValueError("prefix must be a non-empty str")
            if prefix.startswith("\x00"):
                raise SynchroValueError("prefix must not start with a NUL character")
        if isinstance(max_value_size, bool) or not isinstance(max_value_size, int):
            raise SynchroValueError("max_value_size must be a positive int")
        if max_value_size <= 0:
            raise SynchroValueError("max_value_size must be a positive int")
        self._prefix: str | None = (
            None if prefix is None else self._key_prefix(namespace_head(prefix))
        )
        self._namespace_name = prefix
        self._explicit_prefix = prefix is not None
        self._reset_hooks: list[Callable[[], None]] = []
        self._serializer: Serializer = serializer if serializer is not None else JSONSerializer()
        self._max_value_size = max_value_size
        self._recorder: Recorder = Recorder()

    # -- namespace --------------------------------------------------------------------------

    @property
    def prefix(self) -> str | None:
        """What every key of this namespace starts with in the backend (None until the
        interface is attached to an app): the namespace, escaped, and ``:``."""
        return self._prefix

    def bind(self, prefix: str) -> None:
        """Called by Synchro: adopt the namespace derived for (app, synchro name).

        An explicit ``prefix=`` always wins. An interface serves one namespace: attaching
        it to a second app or Synchro name without an explicit prefix is refused, because
        the two would otherwise share (and clear) each other's keys.
        """
        if self._explicit_prefix:
            return
        head = self._key_prefix(namespace_head(prefix))
        if self._prefix is not None and self._prefix != head:
            raise SynchroValueError(
                f"this interface already serves namespace {self._namespace_name!r}; create "
                "one interface per Synchro, or pass an explicit prefix= to share one"
            )
        self._prefix = head
        self._namespace_name = prefix

    def _key_prefix(self, prefix: str) -> str:
        """The string keys actually start with, for namespace ``prefix`` (a hook: a Redis
        Cluster wraps it in a hash tag so that one namespace lives in one slot)."""
        return prefix

    def _namespace(self) -> str:
        prefix = self._prefix
        if prefix is None:
            raise SynchroError(
                "interface is not attached to an app: use Synchro(app, interface=...) "
                "or give the interface a prefix="
            )
        return prefix

    def _key(self, key: Any) -> str:
        prefix = self._prefix
        if prefix is not None and type(key) is str and 0 < len(key) <= MAX_KEY_LENGTH:
            return prefix + key  # check_key's checks, inline: every operation runs them
        return self._namespace() + check_key(key)

    def _lock_key(self, name: Any) -> str:
        return LOCK_MARK + self._namespace() + check_key(name, "lock name")

    def _marked_key(self, mark: str, name: Any, what: str) -> str:
        return mark + self._namespace() + check_key(name, what)

    # -- values -----------------------------------------------------------------------------

    def _dumps(self, value: Any) -> bytes:
        data = self._serializer.dumps(value)
        if len(data) > self._max_value_size:
            raise SynchroValueError(
                f"value is {len(data)} bytes serialized; the limit is {self._max_value_size}"
            )
        return data

    def _loads(self, data: bytes) -> Any:
        return self._serializer.loads(data)

    # -- statistics -------------------------------------------------------------------------

    @property
    def stats_enabled(self) -> bool:
        """Whether operations are counted and timed for :meth:`stats` (on by default;
        switching it off drops what was recorded)."""
        return type(self._recorder) is Recorder

    @stats_enabled.setter
    def stats_enabled(self, enabled: bool) -> None:
        if not isinstance(enabled, bool):
            raise SynchroValueError("stats_enabled must be True or False")
        self._recorder = Recorder() if enabled else NullRecorder()

    def stats(self, *, reset: bool = False) -> dict[str, Any]:
        """What this process's operations on this interface did since it started (or since
        the last ``reset=True``): ``operations`` (per operation: ``calls``, ``errors``,
        ``p50_ms`` and ``p99_ms`` over its last 1,024 calls), ``errors`` (per error class),
        ``round_trips`` and ``batch_sizes`` (round trips to the backend by operations
        carried: those of the batchers, the steps a backend cannot batch, and SyncManager's
        blocking calls; None where operations never leave the process or batching is off).
        JSON-ready."""
        report: dict[str, Any] = {"interface": type(self).__name__}
        report.update(self._recorder.summary())
        sizes = self.round_trip_sizes()
        if sizes is None:
            report["round_trips"] = None
            report["batch_sizes"] = None
        else:
            report["round_trips"] = sum(sizes.values())
            report["batch_sizes"] = {str(size): sizes[size] for size in sorted(sizes)}
        if reset:
            self._recorder.reset()
        return report

    @property
    def batch_sizes(self) -> Counter[int]:
        """Batched round trips in this process, by operations carried (empty where nothing
        is batched)."""
        return Counter()

    def round_trip_sizes(self) -> Counter[int] | None:
        """Every round trip to the backend in this process, by operations carried; None
        where they are not counted (operations that never leave the process; a network
        interface with batching off, whose operations each go out alone)."""
        return None if self._max_batch is None else self.batch_sizes

    @property
    def serializer(self) -> Serializer:
        """What turns values into the bytes stored (the ``serializer`` option; default
        :class:`~sanic_synchro_ctx.serializer.JSONSerializer`)."""
        return self._serializer

    @property
    def max_batch(self) -> int | None:
        """Most operations per batched round trip; None where operations are not batched
        (``batching=False``, or an interface whose operations never leave the process)."""
        return self._max_batch

    @property
    def timeout(self) -> float | None:
        """The interface's own bound on each wait for its backend, in seconds (the
        ``timeout`` option); None where it sets none (AIORedis: the client's
        ``socket_timeout`` bounds its waits)."""
        return self._timeout

    @property
    def endpoint(self) -> str:
        """Where the backend is, for people (no secrets): a URL-like string."""
        return "this process"

    # -- errors -----------------------------------------------------------------------------

    def map_error(self, exc: Exception) -> SynchroError:
        """Translate a client exception into the SynchroError tree."""
        if isinstance(exc, self.connection_errors):
            return SynchroConnectionError(
                f"{type(self).__name__}: backend unreachable or not answering "
                f"({type(exc).__name__}: {exc}); the effect of the operation is unknown "
                "(it may have been applied), and it was not sent again"
            )
        return SynchroError(f"{type(self).__name__}: {type(exc).__name__}: {exc}")

    def _failure(self, name: str, started: float, exc: Exception) -> SynchroError:
        """``exc``, a client's exception from operation ``name``, mapped and recorded."""
        error = self.map_error(exc)
        self._recorder.failed(name, started, error)
        return error

    # -- running from the blocking front end ------------------------------------------------

    if TYPE_CHECKING:

        def run_blocking(self, coro: Coroutine[Any, Any, T]) -> T:
            """Run one operation to completion for a blocking caller."""

    else:
        # driven right here, for an interface whose operations never suspend: the function
        # itself, not a method calling it (one Python call less per blocking operation)
        run_blocking = staticmethod(run_inline)

    # -- life cycle (the extension decides which part runs in which process) ---------------

    def start(self, seed: Callable[[BaseSynchroInterface], None] | None = None) -> Any:
        """In the main process, before any worker starts: start what the interface hosts
        (SyncManager: the manager process) and return a picklable hand-over for the workers'
        :meth:`attach` (None: nothing to hand over). ``seed`` fills a new backend with the
        app's defaults; it runs now, and again whenever the backend is replaced by a new,
        empty one."""
        if seed is not None:
            seed(self)
        return None

    def attach(self, handover: Any = None, *, group: int | None = None) -> None:
        """In each process that serves, before it serves: use the main process's
        ``handover``; without one, ``group`` identifies the processes that must share one
        backend (the workers of one main process), None a process that is alone."""
        return None

    def stop(self) -> None:
        """In the main process, after every worker stopped: stop what :meth:`start` started."""
        self.close()

    def on_reset(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` whenever this process finds the backend replaced by a new, empty
        one (a SyncManager manager that died and was started again). It runs in the thread
        that noticed, and must not block."""
        self._reset_hooks.append(hook)

    def _store_replaced(self) -> None:
        for hook in list(self._reset_hooks):
            try:
                hook()
            except Exception:  # a hook's failure must not fail the operation that noticed
                _log.exception("synchro reset hook %r failed", hook)

    def close(self) -> None:  # noqa: B027 - nothing to release unless a subclass holds some
        """Release this process's connections (the next operation opens them again)."""

    def close_thread(self) -> None:  # noqa: B027 - nothing to release unless a subclass holds some
        """Release what this thread's blocking calls opened (a thread that is done with the
        interface while others go on using it)."""

    async def close_loop(self) -> None:  # noqa: B027 - nothing per loop unless a subclass has it
        """Close what this interface opened for the running loop only (a blocking
        subscription's own loop calls it before it ends)."""

    async def aclose(self) -> None:
        """Like :meth:`close`, from async code (network interfaces close their clients)."""
        self.close()

    # -- public operations ------------------------------------------------------------------
    #
    # Each does the common work and awaits one primitive. A client's own exception from the
    # primitive is mapped into the SynchroError tree right there (no wrapper coroutine: an
    # operation of an inline interface costs a few hundred nanoseconds of Python a layer).

    async def get(self, key: str, default: Any = None) -> Any:
        full = self._key(key)
        started = perf_counter()
        try:
            data = await self.raw_get(full)
        except SynchroError as exc:
            self._recorder.failed("get", started, exc)
            raise
        except Exception as exc:
            raise self._failure("get", started, exc) from exc
        self._recorder.done("get", started)
        return default if data is None else self._loads(data)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        full = self._key(key)
        data = self._dumps(value)
        seconds = None if ttl is None else check_lease(ttl)
        started = perf_counter()
        try:
            await self.raw_set(full, data, seconds)
        except SynchroError as exc:
            self._recorder.failed("set", started, exc)
            raise
        except Exception as exc:
            raise self._failure("set", started, exc) from exc
        self._recorder.done("set", started)

    async def delete(self, *keys: str) -> int:
        full = [self._key(key) for key in keys]
        if not full:
            return 0
        started = perf_counter()
        try:
            result = await self.raw_delete(full)
        except SynchroError as exc:
            self._recorder.failed("delete", started, exc)
            raise
        except Exception as exc:
            raise self._failure("delete", started, exc) from exc
        self._recorder.done("delete", started)
        return result

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        names = list(dict.fromkeys(check_keys(keys)))
        if not names:
            return {}
        started = perf_counter()
        try:
            found = await self.raw_get_many([self._key(name) for name in names])
        except SynchroError as exc:
            self._recorder.failed("get_many", started, exc)
            raise
        except Exception as exc:
            raise self._failure("get_many", started, exc) from exc
        self._recorder.done("get_many", started)
        return {
            name: self._loads(data)
            for name, data in zip(names, found, strict=True)
            if data is not None
        }

    async def update(self, mapping: Mapping[str, Any], *, ttl: float | None = None) -> None:
        items = [
            (self._key(key), self._dumps(value)) for key, value in check_mapping(mapping).items()
        ]
        seconds = check_ttl(ttl)
        if not items:
            return
        started = perf_counter()
        try:
            await self.raw_set_many(items, seconds)
        except SynchroError as exc:
            self._recorder.failed("update", started, exc)
            raise
        except Exception as exc:
            raise self._failure("update", started, exc) from exc
        self._recorder.done("update", started)

    async def set_default(
        self, mapping: Mapping[str, Any], *, ttl: float | None = None
    ) -> dict[str, Any]:
        names = list(check_mapping(mapping))
        items = [(self._key(name), self._dumps(mapping[name])) for name in names]
        seconds = check_ttl(ttl)
        if not items:
            return {}
        started = perf_counter()
        try:
            stored = await self.raw_add_many(items, seconds)
        except SynchroError as exc:
            self._recorder.failed("set_default", started, exc)
            raise
        except Exception as exc:
            raise self._failure("set_default", started, exc) from exc
        self._recorder.done("set_default", started)
        return {name: self._loads(data) for name, data in zip(names, stored, strict=True)}

    async def setdefault(self, key: str, value: Any, *, ttl: float | None = None) -> Any:
        items = [(self._key(key), self._dumps(value))]
        seconds = check_ttl(ttl)
        started = perf_counter()
        try:
            stored = await self.raw_add_many(items, seconds)
        except SynchroError as exc:
            self._recorder.failed("setdefault", started, exc)
            raise
        except Exception as exc:
            raise self._failure("setdefault", started, exc) from exc
        self._recorder.done("setdefault", started)
        return self._loads(stored[0])

    async def increment(self, key: str, by: int = 1, *, ttl: float | None = None) -> int:
        full = self._key(key)
        step = by if type(by) is int and INT64_MIN <= by <= INT64_MAX else check_step(by)
        seconds = None if ttl is None else check_lease(ttl)
        started = perf_counter()
        try:
            result = await self.raw_increment(full, step, seconds)
        except (SynchroTypeError, SynchroValueError) as exc:
            error = _step_error(key, exc)
            self._recorder.failed("increment", started, error)
            raise error from None
        except SynchroError as exc:
            self._recorder.failed("increment", started, exc)
            raise
        except Exception as exc:
            raise self._failure("increment", started, exc) from exc
        self._recorder.done("increment", started)
        return result

    async def decrement(self, key: str, by: int = 1, *, ttl: float | None = None) -> int:
        full = self._key(key)
        step = check_step(-check_step(by))
        seconds = check_ttl(ttl)
        started = perf_counter()
        try:
            result = await self.raw_increment(full, step, seconds)
        except (SynchroTypeError, SynchroValueError) as exc:
            error = _step_error(key, exc)
            self._recorder.failed("decrement", started, error)
            raise error from None
        except SynchroError as exc:
            self._recorder.failed("decrement", started, exc)
            raise
        except Exception as exc:
            raise self._failure("decrement", started, exc) from exc
        self._recorder.done("decrement", started)
        return result

    async def rate_limit(self, key: str, *, limit: int, per: float, cost: int = 1) -> RateLimit:
        """One GCRA step for ``key``: ``limit`` requests per ``per`` seconds (bursts up to
        ``limit``); a request of ``cost`` is counted only when allowed."""
        full = self._marked_key(RATE_MARK, key, "key")
        if not (
            type(limit) is int
            and type(cost) is int
            and 0 < cost <= limit
            and type(per) is float
            and 0.0 < per < MAX_TTL
            and limit <= per * MAX_PER_SECOND
        ):
            limit, per, cost = check_rate(limit, per, cost)
        started = perf_counter()
        try:
            answer = await self.raw_rate_limit(full, limit, per, cost)
        except SynchroError as exc:
            self._recorder.failed("rate_limit", started, exc)
            raise
        except Exception as exc:
            raise self._failure("rate_limit", started, exc) from exc
        self._recorder.done("rate_limit", started)
        if type(answer) is RateLimit:
            return answer
        allowed, remaining, retry_after, reset_after = answer
        return RateLimit(bool(allowed), int(remaining), float(retry_after), float(reset_after))

    async def replace(self, key: str, value: Any) -> Any:
        full = self._key(key)
        data = self._dumps(value)
        started = perf_counter()
        try:
            old = await self.raw_replace(full, data)
        except SynchroError as exc:
            self._recorder.failed("replace", started, exc)
            raise
        except Exception as exc:
            raise self._failure("replace", started, exc) from exc
        self._recorder.done("replace", started)
        return None if old is None else self._loads(old)

    async def compare_and_set(
        self, key: str, expected: Any, new: Any, *, ttl: float | None = None
    ) -> bool:
        full = self._key(key)
        old, data = self._serializer.dumps(expected), self._dumps(new)
        seconds = check_ttl(ttl)
        started = perf_counter()
        try:
            result = await self.raw_compare_and_set(full, old, data, seconds)
        except SynchroError as exc:
            self._recorder.failed("compare_and_set", started, exc)
            raise
        except Exception as exc:
            raise self._failure("compare_and_set", started, exc) from exc
        self._recorder.done("compare_and_set", started)
        return result

    async def expire(self, key: str, ttl: float | None) -> bool:
        full = self._key(key)
        seconds = check_ttl(ttl)
        started = perf_counter()
        try:
            result = await self.raw_expire(full, seconds)
        except SynchroError as exc:
            self._recorder.failed("expire", started, exc)
            raise
        except Exception as exc:
            raise self._failure("expire", started, exc) from exc
        self._recorder.done("expire", started)
        return result

    async def ttl(self, key: str) -> float | None:
        full = self._key(key)
        started = perf_counter()
        try:
            result = await self.raw_ttl(full)
        except SynchroError as exc:
            self._recorder.failed("ttl", started, exc)
            raise
        except Exception as exc:
            raise self._failure("ttl", started, exc) from exc
        self._recorder.done("ttl", started)
        return result

    async def keys(self) -> list[str]:
        prefix = self._namespace()
        cut = len(prefix)
        started = perf_counter()
        try:
            found = await self.raw_keys(prefix)
        except SynchroError as exc:
            self._recorder.failed("keys", started, exc)
            raise
        except Exception as exc:
            raise self._failure("keys", started, exc) from exc
        self._recorder.done("keys", started)
        # a key equal to the head itself (written by some other client) is no key of ours
        return [key[cut:] for key in found if len(key) > cut]

    async def scan_page(
        self, cursor: Any, count: int, matches: Callable[[str], bool] | None = None
    ) -> tuple[Any, list[str]]:
        """One page of this namespace's keys (those ``matches`` accepts, if given): (the
        next page's cursor, or None at the end; the keys). ``cursor`` None starts a scan.
        The front ends' ``scan()`` iterate it."""
        prefix = self._namespace()
        cut = len(prefix)
        started = perf_counter()
        try:
            following, found = await self.raw_scan(prefix, cursor, count)
        except SynchroError as exc:
            self._recorder.failed("scan", started, exc)
            raise
        except Exception as exc:
            raise self._failure("scan", started, exc) from exc
        self._recorder.done("scan", started)
        keys = [key[cut:] for key in found if len(key) > cut]
        return following, keys if matches is None else [key for key in keys if matches(key)]

    async def clear(self) -> None:
        prefix = self._namespace()
        started = perf_counter()
        try:
            await self.raw_clear(prefix)
        except SynchroError as exc:
            self._recorder.failed("clear", started, exc)
            raise
        except Exception as exc:
            raise self._failure("clear", started, exc) from exc
        self._recorder.done("clear", started)

    # -- pipelines -------------------------------------------------------------------------

    async def pipeline_batcher(self) -> Batcher[Any] | None:
        """The running loop's batcher, through which a pipeline's operations leave together;
        None where operations never leave the process (a pipeline then runs them one after
        the other) or batching is off."""
        return None

    async def run_pipeline(self, calls: Sequence[Call]) -> list[Outcome]:
        """Run a pipeline's operations (``(name, args, kwargs)`` of the operations above),
        in order, in as few round trips as the backend allows; one :data:`Outcome` each.
        Each is atomic on its own and fails on its own; nothing is a transaction."""
        check_calls(calls)
        try:
            batcher = await self.pipeline_batcher()
        except Exception as exc:  # preparing failed (a script load): nothing was sent
            error = exc if isinstance(exc, SynchroError) else self.map_error(exc)
            return [(False, error)] * len(calls)
        return await self.run_calls(batcher, calls)

    async def run_calls(self, batcher: Batcher[Any] | None, calls: Sequence[Call]) -> list[Outcome]:
        """Run a pipeline's checked ``calls`` through ``batcher`` (None: one after the
        other), in order; one :data:`Outcome` each."""
        if batcher is None:
            outcomes: list[Outcome] = []
            for name, args, kwargs in calls:
                try:
                    outcomes.append((True, await getattr(self, name)(*args, **kwargs)))
                except Exception as exc:
                    outcomes.append((False, exc))
            return outcomes
        ordered: list[Outcome | None] = [None] * len(calls)
        groups = [list(range(len(calls)))] if self.ordered_batches else waves(calls)
        lost: SynchroConnectionError | None = None
        for group in groups:
            if lost is not None:  # the backend is gone: the rest is not sent (no waits)
                for index in group:
                    ordered[index] = (False, lost)
                continue
            coros = [
                _pipelined(getattr(self, calls[i][0])(*calls[i][1], **calls[i][2])) for i in group
            ]
            for index, outcome in zip(group, await batcher.run_held(coros), strict=True):
                ordered[index] = outcome
                if lost is None and isinstance(outcome[1], SynchroConnectionError):
                    lost = SynchroConnectionError(
                        f"{type(self).__name__}: not sent: an earlier round trip of the "
                        f"pipeline lost the backend ({outcome[1]})"
                    )
        return [outcome for outcome in ordered if outcome is not None]

    # -- notifications ----------------------------------------------------------------------

    def channel_name(self, channel: Any) -> str:
        """The backend's name of ``channel`` in this namespace."""
        return self._marked_key(CHANNEL_MARK, channel, "channel")

    def message_of(self, data: bytes) -> Any:
        """A received message, deserialized."""
        return self._loads(data)

    def _unsupported_notifications(self) -> SynchroUnsupported:
        return SynchroUnsupported(
            f"{type(self).__name__} cannot publish or subscribe: its backend has no channels "
            "(use SyncManager, AIORedis, AsyncioRedis or InMemory)"
        )

    async def publish(self, channel: str, message: Any) -> int:
        """Send ``message`` to every subscriber of ``channel`` in this namespace; how many
        received it (-1 where the backend cannot tell)."""
        full = self.channel_name(channel)
        data = self._dumps(message)
        if not self.notifies:
            raise self._unsupported_notifications()
        started = perf_counter()
        try:
            received = await self.raw_publish(full, data)
        except SynchroError as exc:
            self._recorder.failed("publish", started, exc)
            raise
        except Exception as exc:
            raise self._failure("publish", started, exc) from exc
        self._recorder.done("publish", started)
        return received

    def subscribe(self, *channels: str, max_pending: int = DEFAULT_MAX_PENDING) -> Subscription:
        """A subscription to ``channels`` (``async with`` it: it is live inside the block)."""
        return Subscription(self, self.check_channels(channels), check_max_pending(max_pending))

    def check_channels(self, channels: tuple[Any, ...]) -> tuple[str, ...]:
        """``channels`` checked (at least one; each a non-empty str), repeats removed."""
        if not channels:
            raise SynchroValueError("subscribe to at least one channel")
        for channel in channels:
            self.channel_name(channel)
        if not self.notifies:
            raise self._unsupported_notifications()
        return tuple(dict.fromkeys(channels))

    async def listen(self, channels: list[str], deliver: Deliver) -> Listener:
        """Subscribe to ``channels`` (full names) on the backend: live when it returns."""
        try:
            return await self.raw_listen(channels, deliver)
        except SynchroError:
            raise
        except Exception as exc:
            raise self.map_error(exc) from exc

    async def ping(self) -> float:
        """Seconds one read of the backend took (SynchroConnectionError if it is
        unreachable). Reads a key of this namespace that no operation writes."""
        started = time.perf_counter()
        key = self._namespace() + "\x00ping"
        try:
            await self.raw_get(key)
        except SynchroError:
            raise
        except Exception as exc:
            raise self.map_error(exc) from exc
        return time.perf_counter() - started

    async def acquire_lock(self, name: str, token: str, ttl: float) -> tuple[str | None, int]:
        """One attempt to take lock ``name`` for ``ttl`` s: (None, fencing token) if taken,
        else (the holder's token, 0)."""
        full = self._lock_key(name)
        lease = check_lease(ttl)
        started = perf_counter()
        try:
            holder, fence = await self.raw_lock_acquire(full, token, lease)
        except SynchroError as exc:
            self._recorder.failed("acquire_lock", started, exc)
            raise
        except Exception as exc:
            raise self._failure("acquire_lock", started, exc) from exc
        self._recorder.done("acquire_lock", started)
        return holder, int(fence)

    async def release_lock(self, name: str, token: str) -> bool:
        """Release lock ``name`` if ``token`` holds it; False if it does not (any more)."""
        full = self._lock_key(name)
        started = perf_counter()
        try:
            result = await self.raw_lock_release(full, token)
        except SynchroError as exc:
            self._recorder.failed("release_lock", started, exc)
            raise
        except Exception as exc:
            raise self._failure("release_lock", started, exc) from exc
        self._recorder.done("release_lock", started)
        return result

    async def extend_lock(self, name: str, token: str, ttl: float) -> bool:
        """Make ``token``'s lease of lock ``name`` end ``ttl`` s from now; False if the lock
        is not (any more) its own."""
        full = self._lock_key(name)
        lease = check_lease(ttl)
        started = perf_counter()
        try:
            result = await self.raw_lock_extend(full, token, lease)
        except SynchroError as exc:
            self._recorder.failed("extend_lock", started, exc)
            raise
        except Exception as exc:
            raise self._failure("extend_lock", started, exc) from exc
        self._recorder.done("extend_lock", started)
        return result

    async def locked(self, name: str) -> bool:
        """Whether lock ``name`` is held (a live lease)."""
        full = self._lock_key(name)
        started = perf_counter()
        try:
            result = await self.raw_locked(full)
        except SynchroError as exc:
            self._recorder.failed("locked", started, exc)
            raise
        except Exception as exc:
            raise self._failure("locked", started, exc) from exc
        self._recorder.done("locked", started)
        return result

    async def acquire_semaphore(self, name: str, token: str, limit: int, ttl: float) -> bool:
        """One attempt to hold one of ``limit`` places of semaphore ``name`` for ``ttl`` s."""
        full = self._marked_key(SEMAPHORE_MARK, name, "semaphore name")
        lease = check_lease(ttl)
        started = perf_counter()
        try:
            result = await self.raw_semaphore_acquire(full, token, limit, lease)
        except SynchroError as exc:
            self._recorder.failed("acquire_semaphore", started, exc)
            raise
        except Exception as exc:
            raise self._failure("acquire_semaphore", started, exc) from exc
        self._recorder.done("acquire_semaphore", started)
        return result

    async def release_semaphore(self, name: str, token: str) -> bool:
        """Leave semaphore ``name``; False if ``token`` held no live place (lease ended)."""
        full = self._marked_key(SEMAPHORE_MARK, name, "semaphore name")
        started = perf_counter()
        try:
            result = await self.raw_semaphore_release(full, token)
        except SynchroError as exc:
            self._recorder.failed("release_semaphore", started, exc)
            raise
        except Exception as exc:
            raise self._failure("release_semaphore", started, exc) from exc
        self._recorder.done("release_semaphore", started)
        return result

    # -- primitives: each interface implements these ----------------------------------------
    #
    # Every primitive receives full keys (namespace head included) and serialized bytes,
    # and performs its operation atomically with respect to every other primitive of every
    # process using the same backend. Each returns an awaitable (an ``async def`` is fine);
    # an interface whose primitives never suspend (they complete on first send) runs them
    # inline for the blocking front end. Errors: raise SynchroTypeError/SynchroValueError
    # where a primitive's docstring says so; anything else is mapped by the base
    # (``connection_errors`` to SynchroConnectionError, the rest to SynchroError).

    @abstractmethod
    def raw_get(self, key: str) -> Awaitable[bytes | None]:
        """The bytes stored under ``key``, or None (missing or expired)."""

    @abstractmethod
    def raw_get_many(self, keys: list[str]) -> Awaitable[list[bytes | None]]:
        """The bytes of each key (distinct keys, in order), None where missing."""

    @abstractmethod
    def raw_set(self, key: str, value: bytes, ttl: float | None) -> Awaitable[object]:
        """Store ``value``; ``ttl`` seconds to live (None: no expiry, removing an old one).
        What the awaitable answers is not used (a client's own reply may pass through)."""

    @abstractmethod
    def raw_set_many(self, items: list[tuple[str, bytes]], ttl: float | None) -> Awaitable[None]:
        """Store every item, each with ``ttl`` (one atomic step where the backend can)."""

    @abstractmethod
    def raw_add_many(
        self, items: list[tuple[str, bytes]], ttl: float | None
    ) -> Awaitable[list[bytes]]:
        """Store each item whose key is missing (``ttl`` for those); the bytes every key
        holds afterwards, in order."""

    @abstractmethod
    def raw_delete(self, keys: list[str]) -> Awaitable[int]:
        """Delete ``keys``; how many of them existed (each counted once)."""

    @abstractmethod
    def raw_increment(self, key: str, by: int, ttl: float | None) -> Awaitable[int]:
        """Add ``by`` to the integer stored; the new value. A missing key counts as 0 and
        is created with ``ttl`` (None: no expiry) in the same step; an existing key keeps
        its expiry. SynchroTypeError if the value is not an integer, SynchroValueError if
        the result leaves the signed 64-bit range: the value is then left as it was,
        visibly to nobody."""

    @abstractmethod
    def raw_replace(self, key: str, value: bytes) -> Awaitable[bytes | None]:
        """Store ``value``, keeping the key's expiry; the bytes it held before, or None."""

    @abstractmethod
    def raw_compare_and_set(
        self, key: str, expected: bytes, new: bytes, ttl: float | None
    ) -> Awaitable[bool]:
        """Store ``new`` (with ``ttl``) only if the key exists and holds exactly
        ``expected``; whether it did."""

    @abstractmethod
    def raw_expire(self, key: str, ttl: float | None) -> Awaitable[bool]:
        """Set the expiry of an existing key (None: remove it); False if missing."""

    @abstractmethod
    def raw_ttl(self, key: str) -> Awaitable[float | None]:
        """Seconds left to live; None for a missing key or one without expiry."""

    @abstractmethod
    def raw_keys(self, prefix: str) -> Awaitable[list[str]]:
        """Every full key starting with ``prefix`` (SynchroUnsupported if the backend
        cannot list keys: then declare ``lists_keys = False``)."""

    def raw_scan(self, prefix: str, cursor: Any, count: int) -> Awaitable[tuple[Any, list[str]]]:
        """One page of about ``count`` full keys starting with ``prefix``: (the next
        cursor, None once done; the keys). ``cursor`` is None on the first call, then what
        the previous page returned. A key present for the whole scan comes exactly once; a
        key added or deleted meanwhile may or may not. The default pages through one
        :meth:`raw_keys` snapshot held by the cursor: override it to page on the backend."""
        return self._scan_snapshot(prefix, cursor, count)

    async def _scan_snapshot(
        self, prefix: str, cursor: tuple[list[str], int] | None, count: int
    ) -> tuple[Any, list[str]]:
        keys, position = (await self.raw_keys(prefix), 0) if cursor is None else cursor
        end = position + count
        return ((keys, end) if end < len(keys) else None), keys[position:end]

    def raw_publish(self, channel: str, data: bytes) -> Awaitable[int]:
        """Send ``data`` to the subscribers of ``channel`` (a full name); how many received
        it, or -1 where the backend cannot tell. Optional: an interface that implements it
        and :meth:`raw_listen` declares ``notifies = True``."""
        raise self._unsupported_notifications()

    def raw_listen(self, channels: list[str], deliver: Deliver) -> Awaitable[Listener]:
        """Subscribe to ``channels`` (full names): call ``deliver(channel, data, dropped)``
        for each message, from any thread, in the order each publisher sent them; the
        subscription is live once the returned :class:`Listener` is; it calls
        ``Listener.lose`` when its connection is gone. Bounded by the interface's timeout."""
        raise self._unsupported_notifications()

    @abstractmethod
    def raw_clear(self, prefix: str) -> Awaitable[None]:
        """Delete every data key starting with ``prefix``, nothing else (locks stay)."""

    @abstractmethod
    def raw_lock_acquire(
        self, key: str, token: str, ttl: float
    ) -> Awaitable[tuple[str | None, int]]:
        """Take lock ``key`` for ``token`` for ``ttl`` seconds if it is free or its lease
        ended: (None, fencing token) on success, else (the holder's token, 0). The fencing
        token is an int that grows with every acquisition of the key, in every process."""

    @abstractmethod
    def raw_lock_release(self, key: str, token: str) -> Awaitable[bool]:
        """Release lock ``key`` if ``token`` holds a live lease; whether it did."""

    @abstractmethod
    def raw_lock_extend(self, key: str, token: str, ttl: float) -> Awaitable[bool]:
        """Make ``token``'s live lease of ``key`` end ``ttl`` s from now; False if it holds
        none (never took it, or its lease ended)."""

    @abstractmethod
    def raw_locked(self, key: str) -> Awaitable[bool]:
        """Whether lock ``key`` has a live lease."""

    @abstractmethod
    def raw_semaphore_acquire(
        self, key: str, token: str, limit: int, ttl: float
    ) -> Awaitable[bool]:
        """Give ``token`` one of ``limit`` places of semaphore ``key`` for ``ttl`` seconds
        (renewed if it holds one already; places whose lease ended are free); whether it
        got one."""

    @abstractmethod
    def raw_semaphore_release(self, key: str, token: str) -> Awaitable[bool]:
        """Free ``token``'s place; whether it held a live one."""

    @abstractmethod
    def raw_rate_limit(
        self, key: str, limit: int, per: float, cost: int
    ) -> Awaitable[tuple[bool, int, float, float]]:
        """One GCRA step (:func:`sanic_synchro_ctx.ratelimit.gcra`) on the timestamp stored
        under ``key``, on one clock shared by every caller: (allowed, remaining,
        retry_after, reset_after)."""
