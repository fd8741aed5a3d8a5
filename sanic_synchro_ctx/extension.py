"""Synchro: the Sanic extension that installs a shared context on an app.

``Synchro(app)`` (or ``synchro = Synchro()`` then ``synchro.init_app(app)``) puts the
async front end on ``app.ctx.<name>``, registers the listeners that start, hand over and
stop the interface's backend, and a request middleware that puts the front end matching
the route handler on ``request.ctx.<name>``: the blocking one for a plain ``def`` handler,
the async one otherwise. Everything goes through Sanic's public API; when ``init_app``
runs inside a listener of a running server, the registration happens under
``app.amend()`` so that the very first request sees ``request.ctx.<name>``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .context import BlockingSynchroContext, SynchroContext
from .errors import SynchroValueError
from .interfaces.base import BaseSynchroInterface
from .interfaces.syncmanager import SyncManager

if TYPE_CHECKING:
    from sanic import Request, Sanic

__all__ = ["Synchro", "default_prefix"]

#: Listener and middleware priority: run before the application's own (higher runs first).
PRIORITY = 1_000


def default_prefix(app_name: str, name: str) -> str:
    """The namespace of one (app, Synchro name) pair: no two pairs share one."""
    return f"synchro/{quote(app_name, safe='')}/{quote(name, safe='')}"


def _is_blocking_handler(handler: Callable[..., Any], method: str) -> bool:
    view = getattr(handler, "view_class", None)
    target = getattr(view, method.lower(), handler) if view is not None else handler
    return not (inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target))


class _Binding:
    """What one Synchro holds for one app: the interface and its two front ends."""

    __slots__ = ("aio", "blocking", "handler_kinds", "interface")

    def __init__(self, interface: BaseSynchroInterface) -> None:
        self.interface = interface
        self.aio = SynchroContext(interface)
        self.blocking: BlockingSynchroContext = self.aio.sync
        self.handler_kinds: dict[tuple[Callable[..., Any], str], bool] = {}


class Synchro:
    """Shared, atomic key-value context for every worker of a Sanic app.

    ``interface`` defaults to :class:`SyncManager()` (one per app). ``name`` is the
    attribute used on ``app.ctx`` and ``request.ctx`` (default ``"synchro"``) and part of
    the default key prefix, so several Synchro objects on one app keep separate namespaces.
    """

    def __init__(
        self,
        app: Sanic[Any, Any] | None = None,
        *,
        interface: BaseSynchroInterface | None = None,
        name: str = "synchro",
    ) -> None:
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise SynchroValueError(f"name must be a public Python identifier, got {name!r}")
        if interface is not None and not isinstance(interface, BaseSynchroInterface):
            raise SynchroValueError("interface must be a BaseSynchroInterface instance")
        self.name = name
        self.interface = interface
        self._bindings: dict[str, _Binding] = {}
        if app is not None:
            self.init_app(app, interface=interface)

    @property
    def slot(self) -> str:
        """The ``app.shared_ctx`` attribute through which the main process hands over state."""
        return f"synchro_{self.name}"

    def init_app(
        self, app: Sanic[Any, Any], *, interface: BaseSynchroInterface | None = None
    ) -> SynchroContext:
        """Install the context on ``app``; returns the async front end (``app.ctx.<name>``).

        Works at import time and inside a ``before_server_start`` listener. Calling it
        again for the same app keeps the registrations and, with a new ``interface``,
        switches to it.
        """
        if interface is not None and not isinstance(interface, BaseSynchroInterface):
            raise SynchroValueError("interface must be a BaseSynchroInterface instance")
        binding = self._bindings.get(app.name)
        if interface is None:
            if binding is not None:
                interface = binding.interface
            elif self.interface is not None:
                interface = self.interface
            else:
                interface = SyncManager()
        interface.bind(default_prefix(app.name, self.name))
        first = binding is None
        if binding is None or binding.interface is not interface:
            binding = _Binding(interface)
            self._bindings[app.name] = binding
        setattr(app.ctx, self.name, binding.aio)
        started = app.state.is_started
        if first:
            if started:
                with app.amend():
                    self._register(app, during_start=True)
            else:
                self._register(app, during_start=False)
        if started:
            interface.on_server_start(app, self.slot)
        return binding.aio

    # -- registration ---------------------------------------------------------------------

    def _register(self, app: Sanic[Any, Any], *, during_start: bool) -> None:
        if not during_start:
            app.register_listener(self._main_process_start, "main_process_start")
            app.register_listener(self._main_process_stop, "main_process_stop")
            app.register_listener(self._server_start, "before_server_start", priority=PRIORITY)
        app.register_listener(self._server_stop, "after_server_stop")
        app.register_middleware(self._request_middleware(app.name), "request", priority=PRIORITY)

    def _binding(self, app: Sanic[Any, Any]) -> _Binding:
        return self._bindings[app.name]

    def _main_process_start(self, app: Sanic[Any, Any]) -> None:
        self._binding(app).interface.on_main_process_start(app, self.slot)

    def _main_process_stop(self, app: Sanic[Any, Any]) -> None:
        self._binding(app).interface.on_main_process_stop(app, self.slot)

    def _server_start(self, app: Sanic[Any, Any]) -> None:
        binding = self._binding(app)
        setattr(app.ctx, self.name, binding.aio)
        binding.interface.on_server_start(app, self.slot)

    async def _server_stop(self, app: Sanic[Any, Any]) -> None:
        await self._binding(app).interface.on_server_stop(app, self.slot)

    def _request_middleware(self, app_name: str) -> Callable[[Request], None]:
        name = self.name
        bindings = self._bindings

        def synchro_context(request: Request) -> None:
            binding = bindings[app_name]
            front: SynchroContext | BlockingSynchroContext = binding.aio
            route = request.route
            if route is not None:
                kind = (route.handler, request.method)
                blocking = binding.handler_kinds.get(kind)
                if blocking is None:
                    blocking = binding.handler_kinds[kind] = _is_blocking_handler(*kind)
                if blocking:
                    front = binding.blocking
            setattr(request.ctx, name, front)

        return synchro_context

    def __repr__(self) -> str:
        return f"<Synchro name={self.name!r} apps={sorted(self._bindings)}>"
