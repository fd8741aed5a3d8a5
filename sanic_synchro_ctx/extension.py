"""Synchro: the Sanic extension that installs a shared context on an app.

``Synchro(app)`` (or ``synchro = Synchro()`` then ``synchro.init_app(app)``) puts the
async front end on ``app.ctx.<name>``, registers the listeners that start, hand over and
stop the interface's backend, and a request middleware that puts the front end matching
the route handler on ``request.ctx.<name>``: the blocking one for a plain ``def`` handler,
the async one otherwise. Everything goes through Sanic's public API; when ``init_app``
runs inside a listener of a running server, the registration happens under
``app.amend()`` so that the very first request sees ``request.ctx.<name>``.

This is the one module that knows Sanic: which process is the main one, what a worker is,
how ``app.shared_ctx`` carries the interface's hand-over to the workers. Interfaces only
offer a process-neutral life cycle (``start`` / ``attach`` / ``stop`` / ``aclose``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import multiprocessing
import os
import pickle
import warnings
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from multiprocessing.sharedctypes import RawArray
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .checks import check_key, check_lease, check_mapping
from .config import DEFAULT_URL, interface_from_url
from .context import BlockingSynchroContext, SynchroContext, blocking_handler
from .errors import (
    SynchroConnectionError,
    SynchroSerializationError,
    SynchroTypeError,
    SynchroUnsupported,
    SynchroValueError,
)
from .interfaces.base import BaseSynchroInterface
from .leader import Leadership
from .notifications import RETRY_FIRST, RETRY_LAST, Subscription
from .ratelimit import RateLimit, check_rate, parse_rate
from .report import report

if TYPE_CHECKING:
    from sanic import Request, Sanic

__all__ = ["RESET_SIGNAL", "Synchro", "default_prefix"]

#: Listener and middleware priority: run before the application's own (higher runs first).
PRIORITY = 1_000
#: Seconds between two reports of a worker (``SYNCHRO_REPORT_INTERVAL``; 0: none).
DEFAULT_REPORT_INTERVAL = 5.0
#: The Sanic signal dispatched in a worker that finds the shared store replaced by a new,
#: empty one (a SyncManager manager that died and was started again; ``defaults`` are in it
#: again). ``@app.signal("synchro.store.reset")`` to re-seed anything else.
RESET_SIGNAL = "synchro.store.reset"
# Sanic names its server worker processes "Sanic-Server-<n>-<m>" (SANIC_WORKER_NAME).
_SERVER_WORKER_PREFIX = "Sanic-Server"
_log = logging.getLogger("sanic_synchro_ctx")


def default_prefix(app_name: str, name: str) -> str:
    """The namespace of one (app, Synchro name) pair: no two pairs share one."""
    return f"synchro/{quote(app_name, safe='')}/{quote(name, safe='')}"


def _is_blocking_handler(handler: Callable[..., Any], method: str) -> bool:
    view = getattr(handler, "view_class", None)
    target = getattr(view, method.lower(), handler) if view is not None else handler
    return not (inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target))


def _in_server_worker() -> bool:
    return os.environ.get("SANIC_WORKER_NAME", "").startswith(_SERVER_WORKER_PREFIX)


def _sibling_group(app: Sanic[Any, Any]) -> int | None:
    """Where no main-process listener handed a backend over: the id of the processes that
    serve this app together and must share one backend, or None where this one is alone.

    - a Sanic worker whose init_app ran in a listener: its siblings of one main process;
    - an ASGI server running several worker processes (uvicorn and hypercorn start them
      with multiprocessing, gunicorn forks them; ``--reload`` runs one such child too):
      the processes of its parent;
    - anything else (one process, the sanic-testing clients): alone.
    """
    if _in_server_worker():
        return os.getppid()
    if getattr(app, "asgi", False) and (
        multiprocessing.parent_process() is not None
        or "gunicorn" in os.environ.get("SERVER_SOFTWARE", "")
    ):
        return os.getppid()
    return None


def _pack(handover: Any) -> Any:
    """A hand-over as Sanic's shared_ctx carries it to spawned workers: a multiprocessing
    shared array of its pickle (shared_ctx warns about values of other types)."""
    data = pickle.dumps(handover)
    return RawArray("c", data)


def _unpack(packed: Any) -> Any:
    return pickle.loads(bytes(packed.raw))


def _client_and_route(request: Request) -> str:
    """The default rate-limit budget: one per client address and route."""
    return f"{request.remote_addr or request.ip}|{request.name}"


def _request_of(args: tuple[Any, ...]) -> Request:
    """The request among a handler's arguments (after ``self`` in a class-based view)."""
    from sanic import Request

    for arg in args[:2]:
        if isinstance(arg, Request):
            return arg
    raise SynchroTypeError("Synchro.limit decorates route handlers: no request argument")


def _headers(limit: int, answer: RateLimit) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(answer.remaining),
        "RateLimit-Reset": str(math.ceil(answer.reset_after)),
    }


def _admit(limit: int, answer: RateLimit) -> dict[str, str]:
    """The rate-limit headers of an allowed request; 429 (raised) for a refused one."""
    from sanic.exceptions import SanicException

    headers = _headers(limit, answer)
    if not answer.allowed:
        headers["Retry-After"] = str(max(1, math.ceil(answer.retry_after)))
        raise SanicException(
            "Too many requests: try again later",
            status_code=429,
            headers=headers,
            quiet=True,
        )
    return headers


def _unavailable(error: SynchroConnectionError) -> Exception:
    from sanic.exceptions import ServiceUnavailable

    _log.warning("synchro: rate limit not checked, the backend is unreachable: %s", error)
    return ServiceUnavailable("Rate limit unavailable: try again later", quiet=True)


def _with_headers(target: Any, headers: dict[str, str]) -> Any:
    """Add the rate-limit headers to a response, or to a Sanic exception (whose headers
    the error handler sends); anything else passes unchanged."""
    from sanic.exceptions import SanicException

    if isinstance(target, SanicException):
        target.headers = {**headers, **target.headers}  # a copy: class headers are shared
    elif getattr(target, "headers", None) is not None:
        for name, value in headers.items():
            target.headers.setdefault(name, value)
    return target


class _Binding:
    """What one Synchro holds for one app: the interface, its front ends, its defaults."""

    __slots__ = (
        "aio",
        "blocking",
        "defaults",
        "handler_kinds",
        "handover",
        "interface",
        "leaders",
        "listener",
        "loop",
        "reporter",
        "withdraw",
    )

    def __init__(self, interface: BaseSynchroInterface, defaults: Mapping[str, Any]) -> None:
        self.interface = interface
        self.aio = SynchroContext(interface)
        self.blocking: BlockingSynchroContext = self.aio.sync
        self.handler_kinds: dict[tuple[Callable[..., Any], str], bool] = {}
        self.defaults = defaults
        #: What start() handed over, when the main process's listener ran in this process.
        self.handover: Any = None
        #: Removes what the main process published of its embedded manager (for connect()).
        self.withdraw: Callable[[], None] | None = None
        #: The loop of the server running in this process (where signals are dispatched).
        self.loop: asyncio.AbstractEventLoop | None = None
        #: The leader tasks running in this process's server.
        self.leaders: list[asyncio.Task[None]] = []
        #: The task writing this process's report into Sanic's worker state, if any.
        self.reporter: asyncio.Task[None] | None = None
        #: The task running this process's on_message handlers, if any.
        self.listener: asyncio.Task[None] | None = None

    def seed(self, interface: BaseSynchroInterface) -> None:
        """Set each default that is missing, on ``interface`` (blocking)."""
        if self.defaults:
            interface.run_blocking(interface.set_default(self.defaults))


class Synchro:
    """Shared, atomic key-value context for every worker of a Sanic app.

    ``interface`` defaults to the one ``app.config.SYNCHRO_URL`` names (the environment's
    ``SANIC_SYNCHRO_URL``), else :class:`SyncManager()` (one per app). ``name`` is the
    attribute used on ``app.ctx`` and ``request.ctx`` (default ``"synchro"``) and part of
    the default key prefix, so several Synchro objects on one app keep separate namespaces.
    ``defaults`` are set (each only if missing) once, before any worker serves.
    """

    def __init__(
        self,
        app: Sanic[Any, Any] | None = None,
        *,
        interface: BaseSynchroInterface | None = None,
        name: str = "synchro",
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise SynchroValueError(f"name must be a public Python identifier, got {name!r}")
        if interface is not None and not isinstance(interface, BaseSynchroInterface):
            raise SynchroValueError("interface must be a BaseSynchroInterface instance")
        self.name = name
        self.interface = interface
        self.defaults = dict(check_mapping(defaults)) if defaults is not None else {}
        self._bindings: dict[str, _Binding] = {}
        #: (name, ttl, job) of every leader task, started with each server.
        self._leader_jobs: list[tuple[str, float, Callable[..., Awaitable[Any]]]] = []
        #: channel -> the on_message handlers run in every worker for its messages.
        self._message_handlers: dict[str, list[Callable[..., Awaitable[Any]]]] = {}
        #: Which front end ``app.ctx.<name>`` holds (the blocking one only for 0.1.0 code).
        self._app_front = "async"
        if app is not None:
            self.init_app(app, interface=interface)

    def _configured_interface(self, app: Sanic[Any, Any]) -> BaseSynchroInterface:
        """The interface ``app.config`` names: ``SYNCHRO_URL`` (Sanic reads it from the
        ``SANIC_SYNCHRO_URL`` environment variable; default ``manager://``), and
        ``SYNCHRO_PREFIX`` as the namespace (``<prefix>/<name>`` for a Synchro not named
        ``synchro``). Each process builds its own; nothing connects before it starts."""
        config = app.config
        url = config.get("SYNCHRO_URL") or DEFAULT_URL
        prefix = config.get("SYNCHRO_PREFIX")
        if prefix is None:
            return interface_from_url(url)
        if not isinstance(prefix, str) or not prefix:
            raise SynchroValueError("app.config.SYNCHRO_PREFIX must be a non-empty str")
        if self.name != "synchro":
            prefix = f"{prefix}/{self.name}"
        return interface_from_url(url, prefix=prefix)

    @property
    def slot(self) -> str:
        """The ``app.shared_ctx`` attribute through which the main process hands over state."""
        return f"synchro_{self.name}"

    def init_app(
        self,
        app: Sanic[Any, Any],
        *,
        interface: BaseSynchroInterface | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> SynchroContext:
        """Install the context on ``app``; returns the async front end (``app.ctx.<name>``).

        Works at import time and inside a ``before_server_start`` listener. Calling it
        again for the same app keeps the registrations and, with a new ``interface``,
        switches to it.
        """
        if interface is not None and not isinstance(interface, BaseSynchroInterface):
            raise SynchroValueError("interface must be a BaseSynchroInterface instance")
        merged = {**self.defaults, **check_mapping(defaults)} if defaults else self.defaults
        binding = self._bindings.get(app.name)
        if interface is None:
            if binding is not None:
                interface = binding.interface
            elif self.interface is not None:
                interface = self.interface
            else:
                interface = self._configured_interface(app)
        interface.bind(default_prefix(app.name, self.name))
        first = binding is None
        if binding is None or binding.interface is not interface:
            binding = _Binding(interface, merged)
            self._bindings[app.name] = binding
            interface.on_reset(self._reset_hook(app))
        else:
            binding.defaults = merged
        setattr(app.ctx, self.name, self._front_for_app(binding))
        started = app.state.is_started
        if first:
            if started:
                with app.amend():
                    self._register(app, during_start=True)
            else:
                self._register(app, during_start=False)
        if started:
            self._attach(app, binding)
            self._inject(app)
        return binding.aio

    # -- decorators -----------------------------------------------------------------------

    def limit(
        self,
        rate: str | tuple[int, float],
        *,
        key: Callable[[Request], str] | None = None,
        cost: int = 1,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Rate-limit a route handler across every worker: ``@synchro.limit("100/minute")``.

        ``rate`` is ``"N/second"``, ``"N/minute"``, ``"N/hour"``, ``"N/day"`` or ``(N,
        seconds)``; ``key(request)`` names the budget a request spends from (default: the
        client address and the route name); each request costs ``cost``. Over the limit the
        handler does not run: 429 with ``Retry-After`` (whole seconds, rounded up). Every
        answer carries ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``.
        When the backend is unreachable the request fails with 503: an unlimited route is
        never the silent fallback. Works on ``async def`` and plain ``def`` handlers (and
        their class-based views); a bad rate raises SynchroValueError here.
        """
        from sanic.exceptions import SanicException

        limit, per = parse_rate(rate)
        check_rate(limit, per, cost)
        if key is not None and not callable(key):
            raise SynchroTypeError(f"key must be a callable of the request, got {key!r}")
        budget = key or _client_and_route

        def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
            if inspect.iscoroutinefunction(handler):

                @functools.wraps(handler)
                async def limited(*args: Any, **kwargs: Any) -> Any:
                    request = _request_of(args)
                    interface = self._interface_of(request)
                    try:
                        answer = await interface.rate_limit(
                            budget(request), limit=limit, per=per, cost=cost
                        )
                    except SynchroConnectionError as exc:
                        raise _unavailable(exc) from exc
                    headers = _admit(limit, answer)
                    try:
                        response = await handler(*args, **kwargs)
                    except SanicException as exc:  # its headers are sent: add ours
                        _with_headers(exc, headers)
                        raise
                    return _with_headers(response, headers)

                return limited

            @functools.wraps(handler)
            def limited_blocking(*args: Any, **kwargs: Any) -> Any:
                request = _request_of(args)
                interface = self._interface_of(request)
                try:
                    answer = interface.run_blocking(
                        interface.rate_limit(budget(request), limit=limit, per=per, cost=cost)
                    )
                except SynchroConnectionError as exc:
                    raise _unavailable(exc) from exc
                headers = _admit(limit, answer)
                try:
                    response = handler(*args, **kwargs)
                except SanicException as exc:  # its headers are sent: add ours
                    _with_headers(exc, headers)
                    raise
                return _with_headers(response, headers)

            return limited_blocking

        return decorate

    def leader_task(
        self, name: str, *, ttl: float = 10.0
    ) -> Callable[[Callable[[Sanic[Any, Any]], Awaitable[Any]]], Callable[..., Any]]:
        """Run ``async def job(app)`` in exactly one worker at a time, across the app.

        Every worker contends for lock ``leader:<name>`` once its server started; the one
        that holds it runs the job and renews the lease every ``ttl / 3``. A lease that
        cannot be renewed in time cancels the job; when the leader dies another worker takes
        over within about ``ttl``. A job that returns keeps the lead while its worker lives
        (it is not run again elsewhere); one that raises is logged and run again after
        ``ttl``. Leader tasks stop with the server. See :mod:`sanic_synchro_ctx.leader`.
        """
        check_key(name, "leader task name")
        lease = check_lease(ttl)
        if any(taken == name for taken, _, _ in self._leader_jobs):
            raise SynchroValueError(f"a leader task named {name!r} exists already")

        def decorate(
            job: Callable[[Sanic[Any, Any]], Awaitable[Any]],
        ) -> Callable[[Sanic[Any, Any]], Awaitable[Any]]:
            if not inspect.iscoroutinefunction(job):
                raise SynchroTypeError(f"leader_task runs an async def job(app), got {job!r}")
            self._leader_jobs.append((name, lease, job))
            return job

        return decorate

    def on_message(
        self, channel: str
    ) -> Callable[[Callable[[Sanic[Any, Any], Any], Awaitable[Any]]], Callable[..., Any]]:
        """Run ``async def handler(app, message)`` in every worker for each message
        published on ``channel``, in publish order. Handlers start once the server started
        and stop with it; an exception from a handler is logged and the next message is
        handled; a lost connection is made again (messages published meanwhile are lost).
        Several handlers of one channel run one after the other."""
        check_key(channel, "channel")

        def decorate(
            handler: Callable[[Sanic[Any, Any], Any], Awaitable[Any]],
        ) -> Callable[[Sanic[Any, Any], Any], Awaitable[Any]]:
            if not inspect.iscoroutinefunction(handler):
                raise SynchroTypeError(
                    f"on_message runs an async def handler(app, message), got {handler!r}"
                )
            self._message_handlers.setdefault(channel, []).append(handler)
            return handler

        return decorate

    async def _start_listening(self, app: Sanic[Any, Any]) -> None:
        """Start this worker's on_message handlers; return once their subscription is live
        (or its first attempt failed: it is then tried again in the background)."""
        if not self._message_handlers:
            return
        binding = self._binding(app)
        if not binding.interface.notifies:
            raise SynchroUnsupported(
                f"Synchro {self.name!r} has on_message handlers, and "
                f"{type(binding.interface).__name__} cannot publish or subscribe"
            )
        tried = asyncio.Event()
        binding.listener = asyncio.get_running_loop().create_task(
            self._handle_messages(app, binding.interface, tried),
            name=f"synchro messages {self.name}",
        )
        await tried.wait()

    async def _handle_messages(
        self, app: Sanic[Any, Any], interface: BaseSynchroInterface, tried: asyncio.Event
    ) -> None:
        """Subscribe (again after any failure, never giving up) and run the handlers;
        ``tried`` is set once the first attempt to subscribe succeeded or failed."""
        handlers = {channel: list(found) for channel, found in self._message_handlers.items()}
        delay = RETRY_FIRST
        while True:
            try:
                async with interface.subscribe(*handlers) as subscription:
                    tried.set()
                    delay = RETRY_FIRST
                    while True:
                        await self._handle_next(app, subscription, handlers)
            except Exception as exc:
                tried.set()
                _log.warning(
                    "Synchro %r: subscribing to %s failed (%s); trying again in %.2f s",
                    self.name,
                    list(handlers),
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_LAST)

    async def _handle_next(
        self,
        app: Sanic[Any, Any],
        subscription: Subscription,
        handlers: Mapping[str, list[Callable[..., Awaitable[Any]]]],
    ) -> None:
        """Wait for the next message and run its channel's handlers; a message that cannot
        be read, or a handler that fails, is logged (the next message is handled)."""
        try:
            item = await subscription.get()
        except SynchroSerializationError:
            _log.exception("Synchro %r: a message could not be read", self.name)
            return
        if item is None:
            return
        channel, message = item
        for handler in handlers[channel]:
            try:
                await handler(app, message)
            except Exception:
                _log.exception(
                    "Synchro %r: on_message handler %s failed on %r",
                    self.name,
                    getattr(handler, "__qualname__", handler),
                    channel,
                )

    def _interface_of(self, request: Request) -> BaseSynchroInterface:
        binding = self._bindings.get(request.app.name)
        if binding is None:
            raise SynchroValueError(
                f"Synchro {self.name!r} is not installed on app {request.app.name!r}: "
                "call init_app(app) first"
            )
        return binding.interface

    def _start_leaders(self, app: Sanic[Any, Any]) -> None:
        binding = self._binding(app)
        loop = asyncio.get_running_loop()
        for name, ttl, job in self._leader_jobs:
            leadership = Leadership(binding.interface, name, job, ttl=ttl)
            task = loop.create_task(leadership.run(app), name=f"synchro leader task {name}")
            binding.leaders.append(task)

    def _start_reporting(self, app: Sanic[Any, Any]) -> None:
        """In a worker of Sanic's worker manager, with ``SYNCHRO_REPORT_INTERVAL`` > 0
        (default 5 s): write this process's :func:`~.report.report` into its entry of
        Sanic's worker state (key ``synchro:<name>``), where ``sanic inspect`` shows it and
        :class:`~.inspector.SynchroInspector` adds the workers up."""
        interval = app.config.get("SYNCHRO_REPORT_INTERVAL", DEFAULT_REPORT_INTERVAL)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)):
            raise SynchroValueError("app.config.SYNCHRO_REPORT_INTERVAL must be a number")
        if interval == 0:
            return
        if not 0 < interval < math.inf:  # NaN fails this too
            raise SynchroValueError("app.config.SYNCHRO_REPORT_INTERVAL must be >= 0 seconds")
        multiplexer = getattr(app, "multiplexer", None)  # absent in a single process
        if multiplexer is None:
            return
        binding = self._binding(app)
        binding.reporter = asyncio.get_running_loop().create_task(
            self._report_every(binding, float(interval), multiplexer.state),
            name=f"synchro report {self.name}",
        )

    async def _report_every(
        self, binding: _Binding, interval: float, state: MutableMapping[str, Any]
    ) -> None:
        loop = asyncio.get_running_loop()
        entry = f"synchro:{self.name}"
        while True:
            try:  # a report must never take the worker down; the log says why it failed
                answer = await report(binding.interface)
                try:  # Sanic's worker state is a manager proxy: a blocking call, off the loop
                    await loop.run_in_executor(None, state.update, {entry: answer})
                except KeyError:  # the worker's entry is gone: Sanic is stopping it
                    return
            except Exception:
                _log.exception("Synchro %r: could not write this worker's report", self.name)
            await asyncio.sleep(interval)

    async def _stop_leaders(self, app: Sanic[Any, Any]) -> None:
        binding = self._binding(app)
        if binding.listener is not None:
            binding.listener.cancel()
            await asyncio.gather(binding.listener, return_exceptions=True)
            binding.listener = None
        if binding.reporter is not None:
            binding.reporter.cancel()
            await asyncio.gather(binding.reporter, return_exceptions=True)
            binding.reporter = None
        tasks, binding.leaders = binding.leaders, []
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        # A cancelled leader waits at most its lease for its job, then as long to release
        # the lease: past that, a task that lost its cancellation is left, not waited for.
        bound = 2 * max(ttl for _, ttl, _ in self._leader_jobs) + 1
        done, running = await asyncio.wait(tasks, timeout=bound)
        for task in done:
            error = None if task.cancelled() else task.exception()
            if error is not None:  # it had stopped leading for good: say why
                _log.error("Synchro %r: %s had failed", self.name, task, exc_info=error)
        for task in running:
            _log.warning("Synchro %r: %s did not stop within %s s", self.name, task, bound)

    # -- registration ---------------------------------------------------------------------

    def _register(self, app: Sanic[Any, Any], *, during_start: bool) -> None:
        if not during_start:
            app.register_listener(self._main_process_start, "main_process_start")
            app.register_listener(self._main_process_stop, "main_process_stop")
            app.register_listener(self._server_start, "before_server_start", priority=PRIORITY)
        app.register_listener(self._start_leaders, "after_server_start")
        app.register_listener(self._start_reporting, "after_server_start")
        app.register_listener(self._start_listening, "after_server_start")
        app.register_listener(self._stop_leaders, "before_server_stop")
        app.register_listener(self._server_stop, "after_server_stop")
        app.register_middleware(self._request_middleware(app.name), "request", priority=PRIORITY)

    def _binding(self, app: Sanic[Any, Any]) -> _Binding:
        return self._bindings[app.name]

    def _main_process_start(self, app: Sanic[Any, Any]) -> None:
        binding = self._binding(app)
        interface = binding.interface
        workers = app.state.workers
        if not interface.shares_between_processes and workers > 1:
            warnings.warn(
                f"{type(interface).__name__} keeps one copy of the context per process, and "
                f"app {app.name!r} runs {workers} workers: they will not share it. Use "
                "SyncManager() (the default) or a Redis/memcached interface to share state "
                "between workers.",
                RuntimeWarning,
                stacklevel=2,
            )
        try:
            handover = interface.start(binding.seed)
            interface.run_blocking(interface.ping())
        except SynchroConnectionError as exc:
            # Fail the start (Sanic's main process exits) rather than start workers that
            # can only fail: say what is unreachable.
            raise SynchroConnectionError(
                f"Synchro {self.name!r}: the backend {interface!r} is unreachable at start ({exc})"
            ) from exc
        finally:
            interface.close()  # connections opened here stay out of the workers
        binding.handover = handover
        if handover is not None:
            setattr(app.shared_ctx, self.slot, _pack(handover))
        self._publish(app, binding)

    def _publish(self, app: Sanic[Any, Any], binding: _Binding) -> None:
        """Tell other processes of this user where the embedded manager listens, so that
        ``connect("manager://", app=...)`` and the command line find it."""
        from .interfaces.syncmanager import SyncManager
        from .interfaces.syncmanager.published import publish

        handover = binding.handover
        if isinstance(binding.interface, SyncManager) and isinstance(handover, tuple):
            address, authkey = handover
            if isinstance(address, str):
                binding.withdraw = publish(app.name, self.name, address, authkey)

    def _main_process_stop(self, app: Sanic[Any, Any]) -> None:
        from sanic.log import logger

        binding = self._binding(app)
        interface = binding.interface
        description = repr(interface)
        withdraw, binding.withdraw = binding.withdraw, None
        if withdraw is not None:
            withdraw()
        interface.stop()
        logger.info("Synchro %r: stopped %s", self.name, description)

    def _front_for_app(self, binding: _Binding) -> SynchroContext | BlockingSynchroContext:
        return binding.blocking if self._app_front == "blocking" else binding.aio

    def _server_start(self, app: Sanic[Any, Any]) -> None:
        binding = self._binding(app)
        setattr(app.ctx, self.name, self._front_for_app(binding))
        self._attach(app, binding)
        self._inject(app)

    def _inject(self, app: Sanic[Any, Any]) -> None:
        """Where the app uses sanic-ext (Sanic set it up before this listener; it finalizes
        its injections later, at a lower priority): handlers may declare
        ``synchro: SynchroContext`` or ``synchro: BlockingSynchroContext``. Only the Synchro
        named ``synchro`` registers (a type names one dependency); nothing here imports
        sanic-ext."""
        extend = getattr(app, "_ext", None)
        if self.name != "synchro" or extend is None or not hasattr(extend, "add_dependency"):
            return
        bindings = self._bindings

        from sanic import Request  # importing this package must not import sanic

        def async_front(request: Request) -> SynchroContext:
            return bindings[request.app.name].aio

        def blocking_front(request: Request) -> BlockingSynchroContext:
            return bindings[request.app.name].aio.sync

        # sanic-ext reads these at run time: the request parameter gets the request
        async_front.__annotations__ = {"request": Request, "return": SynchroContext}
        blocking_front.__annotations__ = {"request": Request, "return": BlockingSynchroContext}

        extend.add_dependency(SynchroContext, async_front)
        extend.add_dependency(BlockingSynchroContext, blocking_front)

    def _attach(self, app: Sanic[Any, Any], binding: _Binding) -> None:
        """Before this process serves: attach the interface to the main process's backend,
        or, where no main process started one, to this process's own (and seed it)."""
        binding.loop = asyncio.events._get_running_loop()
        packed = getattr(app.shared_ctx, self.slot, None)
        handover = _unpack(packed) if packed is not None else binding.handover
        interface = binding.interface
        if handover is not None:
            interface.attach(handover)
            return
        group = _sibling_group(app) if binding.handover is None else None
        if group is not None and not interface.shares_between_processes:
            warnings.warn(
                f"{type(interface).__name__} keeps one copy of the context per process, and "
                f"this process is one of several serving app {app.name!r}: they will not "
                "share it. Use SyncManager() (the default) or a Redis/memcached interface.",
                RuntimeWarning,
                stacklevel=2,
            )
        interface.attach(None, group=group)
        binding.seed(interface)

    async def _server_stop(self, app: Sanic[Any, Any]) -> None:
        await self._binding(app).interface.aclose()

    def _reset_hook(self, app: Sanic[Any, Any]) -> Callable[[], None]:
        """What runs when a process finds the shared store replaced: Sanic's signal."""

        def dispatch() -> None:
            binding = self._bindings.get(app.name)
            loop = None if binding is None else binding.loop
            if loop is None or loop.is_closed():
                return
            _log.warning("synchro: the shared store was replaced by a new one")

            def fire() -> None:
                loop.create_task(app.dispatch(RESET_SIGNAL, fail_not_found=False))

            loop.call_soon_threadsafe(fire)

        return dispatch

    def _request_middleware(self, app_name: str) -> Callable[[Request], None]:
        name = self.name
        bindings = self._bindings

        def synchro_context(request: Request) -> None:
            binding = bindings[app_name]
            front: SynchroContext | BlockingSynchroContext = binding.aio
            route = request.route
            handler_task = None
            if route is not None:
                kind = (route.handler, request.method)
                blocking = binding.handler_kinds.get(kind)
                if blocking is None:
                    blocking = binding.handler_kinds[kind] = _is_blocking_handler(*kind)
                if blocking:
                    front = binding.blocking
                    handler_task = asyncio.current_task()
            # this request's task (a connection's task serves its requests one by one)
            blocking_handler.set(handler_task)
            setattr(request.ctx, name, front)

        return synchro_context

    def __repr__(self) -> str:
        return f"<Synchro name={self.name!r} apps={sorted(self._bindings)}>"
