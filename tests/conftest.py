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
from .registry import INTERFACES, KINDS, SHARED, WORKERS
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


#: Tests that start real multi-process servers (each worker a whole interpreter), in two
#: lanes: under pytest-xdist (``--dist loadgroup``) each lane runs on one worker, so at most
#: two such servers load the CPU at once while the other workers run in-process tests, and
#: a lane's module-scoped servers (tests/test_workers.py, ``served``) are shared by its
#: tests. The longest prefix of a test's id names its lane; the two are about even.
LANES = {
    "tests/test_workers.py": "servers-a",
    "tests/test_workers.py::test_leader_task": "servers-b",
    "tests/test_workers.py::test_one_manager": "servers-b",
    "tests/test_workers.py::test_fork_start": "servers-b",
    "tests/test_workers.py::test_workers_with_and_without": "servers-b",
    "tests/test_notification_workers.py": "servers-a",
    "tests/test_sentinel.py": "servers-a",
    "tests/test_run_modes.py": "servers-a",
    "tests/test_lmdb.py": "servers-a",
    "tests/test_docs.py": "servers-b",
    "tests/test_reliability.py": "servers-b",
    "tests/test_inspector.py": "servers-b",
    "tests/test_compat.py": "servers-b",
    "tests/test_config.py::test_sanic_synchro_url": "servers-b",
    "tests/test_redis.py::test_a_missing_client_is_reported": "servers-b",
    "tests/test_harness.py": "servers-b",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # tests/test_workers.py's shared servers run one at a time: its tests on one, by
    # interface (their places in the run kept, their order among themselves changed)
    def served(item: pytest.Item) -> str:
        callspec = getattr(item, "callspec", None)
        return "" if callspec is None else str(callspec.params.get("served", ""))

    places = [index for index, item in enumerate(items) if served(item)]
    shared = sorted((items[i] for i in places), key=lambda item: WORKERS.index(served(item)))
    for place, item in zip(places, shared, strict=True):
        items[place] = item
    for item in items:
        lanes = [prefix for prefix in LANES if item.nodeid.startswith(prefix)]
        if lanes:
            item.add_marker(pytest.mark.xdist_group(LANES[max(lanes, key=len)]))


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


@pytest.fixture(params=INTERFACES)
async def interface(
    request: pytest.FixtureRequest, make_interface: Callable[..., BaseSynchroInterface]
) -> AsyncIterator[BaseSynchroInterface]:
    made = make_interface(request.param)
    yield made
    await made.aclose()


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
