"""Fixtures shared by the suite.

Every test gets a uniquely named Sanic app and the app registry is reset around it.
``ctx`` is the context object under test, parametrized over every interface and over both
front ends: the blocking front end is wrapped to look like the async one, so each contract
test is written once and runs against ``interface x front end``.
"""

from __future__ import annotations

import itertools
import os
import random
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from sanic import Sanic

from sanic_synchro_ctx import Synchro
from sanic_synchro_ctx.interfaces.base import BaseSynchroInterface
from sanic_synchro_ctx.interfaces.syncmanager.process import ManagerProcess

from .backends import MemcachedServer, RedisCluster, RedisSentinels, RedisServer
from .frontends import BlockingAsAsync
from .registry import INTERFACES, KINDS, SHARED, WORKERS, interface_fixture
from .servers import STARTED, TOLERATED

# sanic-ext is installed for the injection tests (tests/test_injection.py), whose apps turn
# it on themselves; every other app of the suite, here and in the processes it starts, is a
# plain Sanic app (Sanic would otherwise extend each app it starts).
os.environ.setdefault("SANIC_AUTO_EXTEND", "false")

_serial = itertools.count()

FRONT_ENDS = ["async", "blocking"]


@pytest.fixture(autouse=True, scope="session")
def _no_server_left_running() -> Iterator[None]:
    """Every server a test started is stopped by that test: a leaked server keeps a CPU busy
    and skews whatever runs after it."""
    yield
    running = [
        server.args for server in STARTED if server.process and server.process.poll() is None
    ]
    for server in STARTED:
        if server.process is not None and server.process.poll() is None:
            server.process.kill()
    assert running == [], f"servers left running: {running}"


#: How many servers had been started, and Sanic failures tolerated, when a test began.
_SERVERS_BEFORE = pytest.StashKey[int]()
_TOLERATED_BEFORE = pytest.StashKey[int]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_SERVERS_BEFORE] = len(STARTED)
    item.stash[_TOLERATED_BEFORE] = len(TOLERATED)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line counting the failures of Sanic's own stop that tests let pass (see
    tests/servers.py, TOLERATED), with the tests they happened in."""
    seen = [
        (report.nodeid, value)
        for reports in terminalreporter.stats.values()
        for report in reports
        for name, value in getattr(report, "user_properties", ())
        if name == "tolerated"
    ]
    where = "; ".join(f"{nodeid}: {what}" for nodeid, what in seen)
    terminalreporter.write_line(
        f"Sanic failures at server stop tolerated: {len(seen)}" + (f" ({where})" if seen else "")
    )


#: The seed of a test's ``rng`` (reported when the test fails).
_SEED = pytest.StashKey[int]()


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> random.Random:
    """The test's source of randomness: seeded from SYNCHRO_TEST_SEED when set (to replay a
    failure), else from the system; a failed test's report names the seed."""
    seed = int(os.environ.get("SYNCHRO_TEST_SEED") or random.SystemRandom().getrandbits(32))
    request.node.stash[_SEED] = seed
    return random.Random(seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report carries the seed of its randomness and the log of every server
    it started, and of those still running (a module's shared server): a server's log lives
    in a temporary directory that later runs delete, and a request that got no answer says
    nothing about why."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "teardown":  # what the test and its fixtures let pass, reported once
        for what in TOLERATED[item.stash.get(_TOLERATED_BEFORE, len(TOLERATED)) :]:
            report.user_properties.append(("tolerated", what))
    if not report.failed:
        return
    if _SEED in item.stash:
        seed = item.stash[_SEED]
        report.sections.append(("random seed", f"{seed} (replay: SYNCHRO_TEST_SEED={seed})"))
    first = item.stash.get(_SERVERS_BEFORE, len(STARTED))
    for index, server in enumerate(STARTED):
        running = server.process is not None and server.process.poll() is None
        if index >= first or running:
            report.sections.append((f"log of server on port {server.port}", server.log()))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def params(item: pytest.Item) -> dict[str, Any]:
        callspec = getattr(item, "callspec", None)
        return {} if callspec is None else dict(callspec.params)

    # tests/test_workers.py's shared servers run one at a time (one per interface, see
    # ``servers`` there): its tests on one, by interface (their places in the run kept,
    # their order among themselves changed)
    places = [index for index, item in enumerate(items) if "served" in params(item)]
    shared = sorted(
        (items[i] for i in places), key=lambda item: WORKERS.index(params(item)["served"])
    )
    for place, item in zip(places, shared, strict=True):
        items[place] = item
    # Under pytest-xdist (--dist loadgroup) the tests of one shared server run on one
    # worker; so do those on a Redis Cluster and on Sentinels (each xdist worker starts the
    # session's servers it needs: three cluster nodes, or two servers and three Sentinels
    # pinging each other, which cost CPU all along).
    for item in items:
        given = params(item)
        kinds = {str(value) for value in given.values()}
        if "served" in given:
            item.add_marker(pytest.mark.xdist_group(f"served-{given['served']}"))
        elif "aioredis-sentinel" in kinds:
            item.add_marker(pytest.mark.xdist_group("sentinels"))
        elif "aioredis-cluster" in kinds:
            item.add_marker(pytest.mark.xdist_group("cluster"))


@pytest.fixture(autouse=True)
def _fresh_sanic_registry() -> Iterator[None]:
    Sanic._app_registry.clear()
    Sanic.test_mode = True
    yield
    Sanic._app_registry.clear()


@pytest.fixture
def app_name(request: pytest.FixtureRequest) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:60]
    return f"t{next(_serial)}_{base}"


@pytest.fixture
def app(app_name: str) -> Sanic[Any, Any]:
    return Sanic(app_name)


@pytest.fixture(scope="session")
def manager_process() -> Iterator[ManagerProcess]:
    """One real manager process for the session; tests keep apart by their unique prefixes."""
    process = ManagerProcess.start(watch_pid=os.getpid())
    yield process
    process.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinels]:
    """A master and a replica watched by three Sentinels (service "main")."""
    group = RedisSentinels(tmp_path_factory.mktemp("sentinels")).start()
    yield group
    group.stop()


@pytest.fixture(scope="session")
def memcached_server() -> Iterator[MemcachedServer]:
    server = MemcachedServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def memcached_servers() -> Iterator[list[MemcachedServer]]:
    """Three memcached servers: one context spread over them (Memcache(servers=...))."""
    servers = [MemcachedServer().start() for _ in range(3)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def make_interface(request: pytest.FixtureRequest) -> Callable[..., BaseSynchroInterface]:
    """Build an interface of one kind; its backend server starts on first use."""

    def make(kind: str, **options: Any) -> BaseSynchroInterface:
        made = KINDS[kind].make(request.getfixturevalue, options)
        made.test_kind = kind  # type: ignore[attr-defined]  # what the registry expects of it
        return made

    return make


interface = interface_fixture(INTERFACES)


@pytest.fixture(params=FRONT_ENDS)
def ctx(
    request: pytest.FixtureRequest, app: Sanic[Any, Any], interface: BaseSynchroInterface
) -> Any:
    """The context object under test (async front end, or the blocking one wrapped)."""
    Synchro(app, interface=interface)
    aio = app.ctx.synchro
    return aio if request.param == "async" else BlockingAsAsync(aio.sync)


@pytest.fixture(params=SHARED)
async def shared_pair(
    request: pytest.FixtureRequest,
    app_name: str,
    make_interface: Callable[..., BaseSynchroInterface],
) -> AsyncIterator[tuple[Any, Any]]:
    """Two namespaces (two apps) on one backend server, to show they never mix."""
    contexts = []
    for suffix in ("a", "b"):
        app = Sanic(f"{app_name}_{suffix}")
        Synchro(app, interface=make_interface(request.param))
        contexts.append(app.ctx.synchro)
    yield contexts[0], contexts[1]
    for context in contexts:
        await context.interface.aclose()


@pytest.fixture(params=SHARED)
async def shared_backend(
    request: pytest.FixtureRequest,
    app_name: str,
    make_interface: Callable[..., BaseSynchroInterface],
) -> AsyncIterator[Callable[..., Any]]:
    """Contexts with explicit prefixes (made unique per test) on one backend server."""
    made: list[BaseSynchroInterface] = []

    def attach(prefix: str) -> Any:
        interface = make_interface(request.param, prefix=app_name + prefix)
        made.append(interface)
        app = Sanic(f"{app_name}_{len(made)}")
        Synchro(app, interface=interface)
        return app.ctx.synchro

    yield attach
    for interface in made:
        await interface.aclose()
