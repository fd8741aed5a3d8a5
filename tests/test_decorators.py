"""The extension's decorators in one process: ``Synchro.limit`` and ``Synchro.leader_task``.

Across real workers they are tested in test_workers.py; here, what a single server shows:
headers, statuses, handler kinds, bad arguments, a backend that is down, and the leader
task's life cycle (the lease logic itself runs on every interface).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sanic import Request, Sanic
from sanic.exceptions import SanicException
from sanic.response import text
from sanic.views import HTTPMethodView
from sanic_testing.reusable import ReusableClient

from sanic_synchro_ctx import (
    AIORedis,
    InMemory,
    Synchro,
    SynchroTypeError,
    SynchroValueError,
)
from sanic_synchro_ctx.interfaces.base import BaseSynchroInterface
from sanic_synchro_ctx.leader import Leadership

from .backends import RedisServer
from .servers import free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def client_of() -> Iterator[Callable[[Sanic[Any, Any]], ReusableClient]]:
    """A running server of ``app`` (one server for every request of the test)."""
    clients: list[ReusableClient] = []

    def start(app: Sanic[Any, Any]) -> ReusableClient:
        client = ReusableClient(app, port=free_port())
        client.run()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.stop()


# -- Synchro.limit ---------------------------------------------------------------------------


def test_limit_answers_429_with_retry_after_once_spent(app: Any, client_of: Any) -> None:
    synchro = Synchro(app, interface=InMemory())

    @app.get("/a")
    @synchro.limit("3/minute")
    async def limited(request: Request) -> Any:
        return text("ran")

    client = client_of(app)
    answers = [client.get("/a")[1] for _ in range(4)]
    assert [a.status for a in answers] == [200, 200, 200, 429]
    assert [a.text for a in answers[:3]] == ["ran"] * 3
    assert {a.headers["RateLimit-Limit"] for a in answers} == {"3"}
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert [a.headers["RateLimit-Reset"] for a in answers] == ["20", "40", "60", "60"]
    assert "Retry-After" not in answers[0].headers
    assert answers[3].headers["Retry-After"] == "20"  # 60/3 s, rounded up to whole seconds


def test_limit_keeps_one_budget_per_client_and_route(app: Any, client_of: Any) -> None:
    synchro = Synchro(app, interface=InMemory())

    @app.get("/one")
    @synchro.limit((1, 60))
    async def one(request: Request) -> Any:
        return text("one")

    @app.get("/two")
    @synchro.limit((1, 60))
    def two(request: Request) -> Any:  # a plain def handler: blocking, on the loop
        return text(type(request.ctx.synchro).__name__)

    client = client_of(app)
    assert client.get("/one")[1].status == 200
    assert client.get("/one")[1].status == 429
    second = client.get("/two")[1]
    assert (second.status, second.text) == (200, "BlockingSynchroContext")
    assert client.get("/two")[1].status == 429


def test_limit_with_a_key_of_the_request_and_a_cost(app: Any, client_of: Any) -> None:
    synchro = Synchro(app, interface=InMemory())

    @app.get("/upload")
    @synchro.limit("10/hour", key=lambda request: request.headers["x-user"], cost=4)
    async def upload(request: Request) -> Any:
        return text("stored")

    client = client_of(app)
    alice = [client.get("/upload", headers={"x-user": "alice"})[1] for _ in range(3)]
    assert [a.status for a in alice] == [200, 200, 429]
    assert [a.headers["RateLimit-Remaining"] for a in alice] == ["6", "2", "2"]
    assert client.get("/upload", headers={"x-user": "bob"})[1].status == 200


def test_limit_on_a_class_based_view(app: Any, client_of: Any) -> None:
    synchro = Synchro(app, interface=InMemory())
    ran: list[str] = []

    class Reports(HTTPMethodView):
        @synchro.limit("1/day")
        async def get(self, request: Request) -> Any:
            ran.append("get")
            return text("report")

        @synchro.limit("1/day")
        def post(self, request: Request) -> Any:
            ran.append("post")
            return text("made")

    app.add_route(Reports.as_view(), "/reports")
    client = client_of(app)
    got = [client.get("/reports")[1] for _ in range(2)]
    assert [g.status for g in got] == [200, 429], [(g.status, g.headers, g.text[:300]) for g in got]
    # the default budget is per client and route: the route's methods share it
    assert client.post("/reports")[1].status == 429
    assert ran == ["get"]


def test_a_handlers_own_http_error_keeps_the_headers(app: Any, client_of: Any) -> None:
    synchro = Synchro(app, interface=InMemory())

    @app.get("/missing")
    @synchro.limit("5/second")
    async def missing(request: Request) -> Any:
        raise SanicException("nothing here", status_code=404, quiet=True)

    answer = client_of(app).get("/missing")[1]
    assert answer.status == 404
    assert answer.headers["RateLimit-Remaining"] == "4"


def test_limit_answers_503_when_the_backend_is_down(
    app: Any, client_of: Any, tmp_path: Path
) -> None:
    """Never silently unlimited: the request fails, the handler does not run."""
    server = RedisServer(tmp_path).start()
    synchro = Synchro(app, interface=AIORedis.from_url(server.url, socket_timeout=1.0))
    ran: list[int] = []

    @app.get("/guarded")
    @synchro.limit("100/minute")
    async def guarded(request: Request) -> Any:
        ran.append(1)
        return text("ran")

    client = client_of(app)
    try:
        assert client.get("/guarded")[1].status == 200
    finally:
        server.stop()
    answer = client.get("/guarded")[1]
    assert answer.status == 503
    assert ran == [1]


@pytest.mark.parametrize(
    "rate",
    [
        "100",
        "100/fortnight",
        "0/second",
        "-1/minute",
        "ten/second",
        "1.5/second",
        "/second",
        "",
        "99999999999999999999999/second",
        (2**63, 60),
        (0, 10),
        (10, 0),
        (10, -1),
        (10, float("nan")),
        ("10", 1),
        (10, "1"),
        (True, 1),
        (1, 2, 3),
        100,
        None,
    ],
    ids=repr,
)
def test_a_bad_rate_is_refused_when_the_decorator_is_applied(rate: Any) -> None:
    with pytest.raises(SynchroValueError, match="rate"):
        Synchro().limit(rate)


def test_bad_limit_arguments_are_refused_when_applied() -> None:
    with pytest.raises(SynchroValueError, match="cost"):
        Synchro().limit("3/second", cost=4)
    with pytest.raises(SynchroTypeError, match="callable"):
        Synchro().limit("3/second", key="client")  # type: ignore[arg-type]


# -- Synchro.leader_task ---------------------------------------------------------------------


def test_bad_leader_tasks_are_refused_when_applied() -> None:
    synchro = Synchro()

    def not_async(app: Any) -> None:
        raise AssertionError("never run")

    with pytest.raises(SynchroTypeError, match="async def"):
        synchro.leader_task("job")(not_async)  # type: ignore[arg-type]
    with pytest.raises(SynchroValueError, match="ttl"):
        synchro.leader_task("job", ttl=-1)
    with pytest.raises(SynchroValueError, match="empty"):
        synchro.leader_task("")

    @synchro.leader_task("job")
    async def job(app: Any) -> None:
        raise AssertionError("never run")

    with pytest.raises(SynchroValueError, match="exists"):
        synchro.leader_task("job")


async def test_a_leader_task_runs_with_the_server_and_stops_with_it(app: Any) -> None:
    synchro = Synchro(app, interface=InMemory())
    events: list[str] = []

    @synchro.leader_task("ticker", ttl=1.0)
    async def ticker(app: Sanic[Any, Any]) -> None:
        events.append(f"start {app.name}")
        try:
            await asyncio.Event().wait()
        finally:
            events.append("cancelled")

    server = await app.create_server(host="127.0.0.1", port=free_port(), return_asyncio_server=True)
    assert server is not None
    await server.startup()
    await server.before_start()
    await server.after_start()
    await until(lambda: events == [f"start {app.name}"])
    assert await app.ctx.synchro.locked("leader:ticker")
    await server.before_stop()
    assert events == [f"start {app.name}", "cancelled"]
    assert not await app.ctx.synchro.locked("leader:ticker")  # released for a successor
    server.close()
    await server.wait_closed()
    await server.after_stop()


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


# -- the lease logic, on every interface -----------------------------------------------------


@pytest.fixture
def attached(app: Any, interface: BaseSynchroInterface) -> BaseSynchroInterface:
    Synchro(app, interface=interface)
    return interface


async def test_one_of_two_contenders_leads_and_the_other_takes_over(
    attached: BaseSynchroInterface,
) -> None:
    ttl = 1.0
    running: list[int] = []
    overlaps = 0

    def job_of(who: int) -> Callable[[], Any]:
        async def job() -> None:
            nonlocal overlaps
            overlaps += bool(running)
            running.append(who)
            try:
                await asyncio.Event().wait()
            finally:
                running.remove(who)

        return job

    first, second = (Leadership(attached, "job", job_of(n), ttl=ttl) for n in (1, 2))
    tasks = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    await until(lambda: len(running) == 1)
    leader, follower = (first, second) if first.leading else (second, first)
    leading_task = tasks[0] if leader is first else tasks[1]
    # the follower stays out while the leader renews, for three leases
    deadline = time.monotonic() + 3 * ttl
    while time.monotonic() < deadline:
        assert not follower.leading
        await asyncio.sleep(0.05)
    token = leader.token
    leading_task.cancel()  # the leader stops (and releases): the follower takes over
    stopped = time.monotonic()
    await until(lambda: follower.leading)
    assert time.monotonic() - stopped <= ttl + 1.0
    assert follower.token > token
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert overlaps == 0
    assert running == []


async def test_a_failing_job_runs_again_after_ttl(attached: BaseSynchroInterface) -> None:
    ttl = 0.5
    runs: list[float] = []

    async def job() -> None:
        runs.append(time.monotonic())
        if len(runs) == 1:
            raise RuntimeError("first run fails")
        await asyncio.Event().wait()

    leadership = Leadership(attached, "flaky", job, ttl=ttl)
    task = asyncio.create_task(leadership.run())
    await until(lambda: len(runs) == 2)
    assert runs[1] - runs[0] >= ttl
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_leader_cancelled_while_its_job_ends_ends_as_cancelled(
    attached: BaseSynchroInterface,
) -> None:
    """The lease lapses (the job holds the event loop past it), so the leader cancels its
    job and waits for it; the leader task is cancelled during the job's cleanup. It must end,
    cancelled: a leader that swallowed that cancellation led again for ever."""
    ttl = 0.5
    # Past the lease: memcached removes one up to 3 s after it was written (ttl_resolution 1)
    hold = 2 * ttl + 3 * attached.ttl_resolution
    runs = 0
    cleaning = asyncio.Event()
    let_go = asyncio.Event()

    async def job() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            time.sleep(hold)  # noqa: ASYNC251 (holds the loop: no renewal, the lease lapses)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cleaning.set()
            await let_go.wait()
            raise

    leadership = Leadership(attached, "lapsing", job, ttl=ttl)
    task = asyncio.create_task(leadership.run())
    try:
        await until(cleaning.is_set)  # the lease was lost: the leader is waiting for its job
        task.cancel()
        let_go.set()
        done, _ = await asyncio.wait({task}, timeout=5 * ttl)
    finally:  # on a failure too: the job ends, the leader task is stopped
        let_go.set()
        task.cancel()
        await asyncio.wait({task}, timeout=5 * ttl)
    assert task in done, f"the leader task went on; runs of the job: {runs}"
    assert task.cancelled()
    assert runs == 1


async def test_a_job_that_returned_keeps_the_lead(attached: BaseSynchroInterface) -> None:
    ttl = 0.5
    done: list[int] = []

    def job_of(who: int) -> Callable[[], Any]:
        async def job() -> None:
            done.append(who)

        return job

    first = Leadership(attached, "once", job_of(1), ttl=ttl)
    first_task = asyncio.create_task(first.run())
    await until(lambda: done == [1])
    second = Leadership(attached, "once", job_of(2), ttl=ttl)
    second_task = asyncio.create_task(second.run())
    deadline = time.monotonic() + 3 * ttl  # three leases: renewed, not run elsewhere
    while time.monotonic() < deadline:
        assert done == [1]
        await asyncio.sleep(0.05)
    for task in (first_task, second_task):
        task.cancel()
    await asyncio.gather(first_task, second_task, return_exceptions=True)


def test_a_decorator_of_a_synchro_never_installed_says_what_is_missing(
    app: Any, client_of: Any, caplog: pytest.LogCaptureFixture
) -> None:
    synchro = Synchro()  # init_app(app) forgotten

    @app.get("/limited")
    @synchro.limit("5/minute")
    async def limited(request: Request) -> Any:
        return text("ran")

    answer = client_of(app).get("/limited")[1]
    assert answer.status == 500
    assert "is not installed on app" in caplog.text
    assert "call init_app(app) first" in caplog.text
