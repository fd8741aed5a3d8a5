"""The Synchro extension: installation forms, front-end choice, names and namespaces."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from sanic import Request, Sanic
from sanic.response import json, text
from sanic.views import HTTPMethodView

from sanic_synchro_ctx import (
    AIORedis,
    InMemory,
    Synchro,
    SynchroConnectionError,
    SynchroError,
    SynchroTypeError,
    SynchroValueError,
    SyncManager,
)
from sanic_synchro_ctx.context import SynchroContext, blocking_handler
from sanic_synchro_ctx.extension import default_prefix
from sanic_synchro_ctx.interfaces.base import namespace_head


def kinds_app(app: Sanic[Any, Any]) -> None:
    @app.get("/async")
    async def async_handler(request: Request) -> Any:
        return text(type(request.ctx.synchro).__name__)

    @app.get("/def")
    def def_handler(request: Request) -> Any:
        return text(type(request.ctx.synchro).__name__)

    class View(HTTPMethodView):
        async def get(self, request: Request) -> Any:
            return text(type(request.ctx.synchro).__name__)

        def post(self, request: Request) -> Any:
            return text(type(request.ctx.synchro).__name__)

    app.add_route(View.as_view(), "/view")


def test_synchro_app_installs_the_async_front_end_with_the_default_interface(app: Any) -> None:
    synchro = Synchro(app)
    assert isinstance(app.ctx.synchro, SynchroContext)
    assert isinstance(app.ctx.synchro.interface, SyncManager)
    assert app.ctx.synchro.sync.aio is app.ctx.synchro
    assert synchro.slot == "synchro_synchro"


def test_request_front_end_follows_the_handler_kind(app: Any) -> None:
    Synchro(app, interface=InMemory())
    kinds_app(app)
    assert app.test_client.get("/async")[1].text == "SynchroContext"
    assert app.test_client.get("/def")[1].text == "BlockingSynchroContext"
    assert app.test_client.get("/view")[1].text == "SynchroContext"
    assert app.test_client.post("/view")[1].text == "BlockingSynchroContext"


def test_factory_init_app_at_import_time(app: Any) -> None:
    synchro = Synchro()
    returned = synchro.init_app(app, interface=InMemory())
    kinds_app(app)
    assert returned is app.ctx.synchro
    assert app.test_client.get("/def")[1].text == "BlockingSynchroContext"


def test_init_app_inside_before_server_start_serves_the_first_request(app: Any) -> None:
    synchro = Synchro()

    @app.before_server_start
    async def install(app: Any) -> None:
        synchro.init_app(app, interface=InMemory())

    kinds_app(app)
    # Each test-client request starts and stops a server: every one of them, including the
    # very first, must find request.ctx.synchro in place.
    assert app.test_client.get("/async")[1].text == "SynchroContext"
    assert app.test_client.get("/def")[1].text == "BlockingSynchroContext"


def test_repeated_init_app_registers_once(app: Any) -> None:
    synchro = Synchro()
    interface = InMemory()
    synchro.init_app(app, interface=interface)
    synchro.init_app(app)
    assert len(app.request_middleware) == 1
    assert app.ctx.synchro.interface is interface


def test_init_app_with_a_new_interface_switches_to_it(app: Any) -> None:
    synchro = Synchro(app, interface=InMemory())
    app.ctx.synchro.sync.set("k", "old")
    synchro.init_app(app, interface=InMemory())
    assert app.ctx.synchro.sync.get("k") is None


def test_synchro_attaches_before_the_users_own_before_server_start(app: Any) -> None:
    order = []

    class Recording(InMemory):
        def attach(self, handover: Any = None, *, group: int | None = None) -> None:
            order.append("attach")

    @app.before_server_start
    async def early(app: Any) -> None:  # registered before Synchro, yet runs after it
        order.append("user")

    Synchro(app, interface=Recording())

    @app.get("/")
    async def index(request: Request) -> Any:
        return text("ok")

    app.test_client.get("/")
    assert order == ["attach", "user"]


def test_two_names_on_one_app_keep_separate_namespaces(app: Any) -> None:
    Synchro(app, name="cache", interface=InMemory())
    Synchro(app, name="flags")

    @app.get("/")
    async def index(request: Request) -> Any:
        await request.ctx.cache.set("k", "cache")
        await request.ctx.flags.set("k", "flags")
        return json([await request.ctx.cache.k, await request.ctx.flags.k])

    assert app.test_client.get("/")[1].json == ["cache", "flags"]
    assert app.ctx.cache.interface.prefix != app.ctx.flags.interface.prefix


def test_namespace_heads_never_nest() -> None:
    prefixes = [
        namespace_head(default_prefix("app", "synchro")),
        namespace_head(default_prefix("app", "synchro2")),
        namespace_head(default_prefix("app:synchro", "x")),
        namespace_head(default_prefix("app", "synchro:x")),
        namespace_head(default_prefix("ap", "p")),
        namespace_head("app"),
        namespace_head("app2"),
        namespace_head("app:"),
        namespace_head("app%3A"),
        namespace_head("synchro"),
    ]
    assert len(set(prefixes)) == len(prefixes)
    for one in prefixes:
        for other in prefixes:
            if one is not other:
                assert not other.startswith(one), (one, other)


@pytest.mark.parametrize("name", ["", "has-dash", "_private", "1st", 3])
def test_name_must_be_a_public_identifier(name: Any) -> None:
    with pytest.raises(SynchroValueError):
        Synchro(name=name)


def test_interface_must_be_an_interface(app: Any) -> None:
    with pytest.raises(SynchroValueError):
        Synchro(app, interface="redis://")  # type: ignore[arg-type]


def test_one_interface_cannot_serve_two_apps_without_a_prefix(app_name: str) -> None:
    shared = InMemory()
    Synchro(Sanic(app_name + "a"), interface=shared)
    with pytest.raises(SynchroValueError, match="one interface per Synchro"):
        Synchro(Sanic(app_name + "b"), interface=shared)


def test_an_explicit_prefix_may_be_shared_on_purpose(app_name: str) -> None:
    shared = InMemory(prefix="common:")
    first, second = Sanic(app_name + "a"), Sanic(app_name + "b")
    Synchro(first, interface=shared)
    Synchro(second, interface=shared)
    first.ctx.synchro.sync.set("k", 1)
    assert second.ctx.synchro.sync.get("k") == 1


@pytest.mark.parametrize("prefix", ["", "\x00lock", 5])
def test_prefix_must_be_a_non_empty_str_without_leading_nul(prefix: Any) -> None:
    with pytest.raises(SynchroValueError):
        InMemory(prefix=prefix)


def test_an_unattached_interface_says_how_to_attach_it() -> None:
    interface = InMemory()
    with pytest.raises(SynchroError, match="not attached"):
        interface.run_blocking(interface.get("k"))


# -- the front ends used the wrong way fail loudly; tools never reach the backend ------------


def test_the_async_front_end_in_a_def_handler_fails_loudly(app: Any) -> None:
    """A def handler cannot await: app.ctx.synchro there would count nothing (a coroutine
    never awaited) or put an awaitable in the page. It raises, saying what to use."""
    Synchro(app, interface=InMemory(), defaults={"counter": 0})
    scheduled: list[Any] = []

    @app.get("/read")
    def read(request: Request) -> Any:
        return text(str(request.app.ctx.synchro.counter))

    @app.get("/increment")
    def increment(request: Request) -> Any:
        request.app.ctx.synchro.increment("counter")
        return text("counted?")

    @app.get("/right")
    def right(request: Request) -> Any:
        return text(str(request.ctx.synchro.increment("counter")))

    @app.get("/background")
    def background(request: Request) -> Any:
        async def later() -> None:  # a task of its own may await the async front end
            scheduled.append(await request.app.ctx.synchro.increment("counter"))

        request.app.add_task(later())
        return text("scheduled")

    @app.get("/async")
    async def in_async(request: Request) -> Any:
        return text(str(await request.app.ctx.synchro.counter))

    for path in ("/read", "/increment"):
        _, response = app.test_client.get(path)
        assert response.status == 500
    assert app.test_client.get("/right")[1].text == "1"  # nothing was counted above
    assert app.test_client.get("/async")[1].text == "1"
    assert app.test_client.get("/background")[1].text == "scheduled"
    assert scheduled == [2]


async def test_the_check_refuses_the_task_of_a_def_handler_only(app: Any) -> None:
    Synchro(app, interface=InMemory())
    aio = app.ctx.synchro
    token = blocking_handler.set(asyncio.current_task())  # as the middleware does for a def
    try:
        with pytest.raises(SynchroTypeError, match=r"request\.ctx\.synchro"):
            aio.increment("n")
        with pytest.raises(SynchroTypeError, match=r"app\.ctx\.synchro\.sync"):
            aio.counter  # noqa: B018

        async def elsewhere() -> int:
            result: int = await aio.increment("n")
            return result

        assert await asyncio.create_task(elsewhere()) == 1  # another task may
    finally:
        blocking_handler.reset(token)
    assert await aio.increment("n") == 2


def test_introspection_by_tools_never_reaches_the_backend(app_name: str) -> None:
    """Error formatters probe attributes (getattr(value, "dtype", "")): with the backend
    down, a probe must answer at once, not read Redis and fail."""
    interface = AIORedis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=30)
    app = Sanic(app_name)
    Synchro(app, interface=interface)
    blocking = app.ctx.synchro.sync
    started = time.monotonic()
    for front in (blocking, app.ctx.synchro):
        assert getattr(front, "dtype", "probe") == "probe"
        assert not hasattr(front, "shape")
        assert repr(front).startswith("<")
    assert time.monotonic() - started < 1  # nothing waited for a connection
    with pytest.raises(SynchroConnectionError):  # a key read does go to the backend
        interface.run_blocking(interface.get("dtype"))
