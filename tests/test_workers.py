"""Real multi-worker runs: ``python -m sanic tests.apps.workers_app:app --workers N``."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from .registry import KINDS, NOTIFYING_WORKERS, SERVED_BY, WORKERS
from .servers import (
    SanicServer,
    assert_stopped_cleanly,
    manager_processes_watching,
    sanic_signal_hung_on_worker_state,
    values_of,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)


#: The leader task's lease on the shared servers. Their tests do not wait for it: a long
#: one keeps a leader that the busy machine starves of CPU for a moment from losing it.
STEADY_LEADER_TTL = 10.0


@pytest.fixture(scope="module")
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], SanicServer]]:
    """One ``--workers 4`` server per interface, shared by the tests of this module that
    only send it requests (each on keys of its own, or reading counts relative to where
    they start), with the leader task "recorder" and, where the interface notifies, the
    on_message handler of channel "events" running. One runs at a time: asked for another
    interface, it stops (through Sanic's monitor message: exit code 0, no traceback
    through this library) and that one starts. tests/conftest.py orders these tests by
    interface, so that each server starts once (in a shuffled order, as often as the
    interface changes)."""
    current: dict[str, SanicServer] = {}  # at most one: interface -> its server

    def stop_current() -> None:
        running = list(current.values())
        current.clear()
        for server in running:
            try:
                assert server.terminate() == 0, server.log()  # the leader task stopped
                assert server.library_tracebacks() == []
            finally:
                server.stop()

    def server_of(kind: str) -> SanicServer:
        if kind in current:
            return current[kind]
        stop_current()
        env = worker_env(kind, request, f"served-{kind}")
        env["SYNCHRO_LEADER"] = str(STEADY_LEADER_TTL)
        if KINDS[kind].notifies:
            env["SYNCHRO_MESSAGES"] = "1"
        log_dir = tmp_path_factory.mktemp(f"served-{kind}")
        server = current[kind] = SanicServer.cli(log_dir, "--workers", "4", env=env)
        server.start()
        server.wait_workers(4)
        server.assert_served_by(SERVED_BY[kind], 4)
        return server

    try:
        yield server_of
    finally:
        stop_current()


@pytest.fixture(params=WORKERS)
def served(request: pytest.FixtureRequest, servers: Callable[[str], SanicServer]) -> SanicServer:
    """The shared server of one interface (see ``servers``)."""
    return servers(request.param)


#: The tests below that need no particular interface use the default one.
on_the_default = pytest.mark.parametrize("served", ["syncmanager"], indirect=True)


def test_concurrent_increments_are_exact(served: SanicServer) -> None:
    """async handlers (on the worker's loop) and def handlers (the blocking front end)
    of four workers on one counter: every value handed out once, every worker sees the
    total; negative steps crossing zero too."""
    start = int(served.get("/count").text)
    bodies = served.hammer_paths(["/inc", "/inc-def"] * 250, concurrency=50)
    assert values_of(bodies) == list(range(start + 1, start + 501))
    assert set(served.counts_by_worker(4).values()) == {str(start + 500)}
    # 150 * (-5) + 150 * 2 = -450: from start + 500 to start + 50
    served.hammer_paths(["/add/-5", "/add/2"] * 150, concurrency=50)
    assert set(served.counts_by_worker(4).values()) == {str(start + 50)}
    assert served.get_fresh("/kinds-def") == "BlockingSynchroContext"


@pytest.mark.parametrize("served", NOTIFYING_WORKERS, indirect=True)
def test_every_worker_hears_every_message_once_in_order(served: SanicServer) -> None:
    """1,000 messages published from one worker reach the on_message handler of all four,
    each once and in order."""
    # the handlers subscribe once their server started: wait until all four listen
    wait_for(lambda: subscribers(served) == 4, what="4 subscribed workers")
    reply = served.get("/publish/1000").json()
    assert reply["receivers"] == [4]  # each of the 1,000 reached four subscribers

    def all_heard() -> dict[str, Any] | None:
        found = heard(served)
        done = len(found) == 4 and all(r["count"] == 1000 for r in found.values())
        return found if done else None

    found = wait_for(all_heard, what="1,000 messages heard by each of the 4 workers")
    for record in found.values():  # (each worker's pid is its key)
        assert record["in_order"] is True
        assert record["last"] == {reply["publisher"]: 999}


@on_the_default
def test_set_default_in_every_worker_lands_once(served: SanicServer) -> None:
    seeds = served.get("/seeds").json()
    assert seeds["started"] == 4
    assert len(seeds["seen"]) == 4, seeds  # four workers each ran set_default ...
    assert set(seeds["seen"].values()) == {seeds["seed"]}  # ... and all saw the first one's
    assert f"seen:{seeds['seed']}" in seeds["seen"]
    # A listener registered before Synchro(app) ran after it, on the shared store, in all four.
    assert seeds["early_starts"] == 4


@on_the_default
def test_a_value_set_by_one_worker_is_read_by_another(served: SanicServer) -> None:
    writer = served.get("/set/shared-key/written-once").text

    def read_from_another_worker() -> dict[str, object] | None:
        reply = served.get("/get/shared-key").json()
        return reply if str(reply["pid"]) != writer else None

    reply = wait_for(read_from_another_worker, what="a read served by another worker")
    assert reply["value"] == "written-once"


@on_the_default
def test_lock_held_by_one_worker_excludes_the_others(served: SanicServer) -> None:
    # Control: without the lock the critical sections overlap, and the counters show it.
    served.get("/reset-locks")
    served.hammer("/unlocked", 300, concurrency=30)
    control = served.get("/lock-stats").json()
    assert control["violations"] > 0, control

    served.get("/reset-locks")
    served.hammer("/locked", 300, concurrency=30)
    assert served.get("/lock-stats").json() == {"violations": 0, "entered": 300, "inside": 0}

    served.get("/reset-locks")
    served.hammer("/locked-def", 200, concurrency=20)
    assert served.get("/lock-stats").json() == {"violations": 0, "entered": 200, "inside": 0}


def test_one_manager_runs_and_stops_with_the_server(tmp_path: Path) -> None:
    """Stopped as a user stops it, with SIGINT (Ctrl-C). When Sanic's main process hangs in
    its own SIGINT handler (sanic_signal_hung_on_worker_state: it is killed and tolerated),
    this run cannot show the stop: the test says so as a skip."""
    server = SanicServer.cli(tmp_path, "--workers", "2").start()
    try:
        server.wait_workers(2)
        assert server.process is not None
        main_pid = server.process.pid
        assert len(manager_processes_watching(main_pid)) == 1
    finally:
        code = server.stop()
    if sanic_signal_hung_on_worker_state(server.full_log()):
        pytest.skip("Sanic's main process hung in its own SIGINT handler: no stop to check")
    assert_stopped_cleanly(server, code, main_pid)


# -- every interface across real workers -------------------------------------------------------


@pytest.mark.parametrize("kind", WORKERS)
def test_init_app_in_a_workers_listener_shares_one_store(
    request: pytest.FixtureRequest, tmp_path: Path, app_name: str, kind: str
) -> None:
    """Factory style (``init_app`` inside ``before_server_start``, so no main-process
    listener runs) on every interface across two real workers: one store, exact counts.
    LMDB gets a path here; without one it must refuse (the next test)."""
    env = {**worker_env(kind, request, app_name), "SYNCHRO_FACTORY": "1"}
    if kind == "lmdb":
        env["SYNCHRO_LMDB_PATH"] = str(tmp_path / "store")
    with SanicServer.cli(tmp_path, "--workers", "2", env=env) as server:
        server.wait_workers(2)
        server.assert_served_by(SERVED_BY[kind], 2)
        bodies = server.hammer_paths(["/inc", "/inc-def"] * 150, concurrency=30)
        assert values_of(bodies) == list(range(1, 301))
        assert set(server.counts_by_worker(2).values()) == {"300"}


def test_a_worker_given_no_store_refuses_a_private_one(tmp_path: Path) -> None:
    """``LMDB()`` without a path in factory style: no main process hands a directory over,
    and a private one per worker would split the state silently (3 workers, 600 increments
    answered 241 distinct values): the workers refuse to start, saying why."""
    env = {"SYNCHRO_INTERFACE": "lmdb", "SYNCHRO_FACTORY": "1"}
    server = SanicServer.cli(tmp_path, "--workers", "2", env=env)
    with pytest.raises(AssertionError, match=r"(exited|did not answer)"):
        server.start(timeout=15)
    log = server.full_log()
    assert "LMDB() without a path was attached in a worker" in log
    assert "SynchroError" in log


def worker_env(kind: str, request: pytest.FixtureRequest, app_name: str) -> dict[str, str]:
    """What tests/apps/workers_app.py needs to build ``kind`` on the session's servers."""
    env = {"SYNCHRO_INTERFACE": kind, "SYNCHRO_PREFIX": app_name}
    if kind in ("aioredis", "asyncio_redis"):
        env["SYNCHRO_REDIS_URL"] = request.getfixturevalue("redis_server").url
    elif kind == "aioredis-cluster":
        env["SYNCHRO_REDIS_URL"] = request.getfixturevalue("redis_cluster").url
    elif kind == "memcache":
        env["SYNCHRO_MEMCACHED"] = str(request.getfixturevalue("memcached_server").port)
    return env


def subscribers(server: SanicServer) -> int:
    """How many subscribers a message reaches now (-1 while the backend is unreachable)."""
    response = server.request("/probe")
    return int(response.text) if response.status_code == 200 else -1


def heard(server: SanicServer) -> dict[str, Any]:
    found: dict[str, Any] = server.get("/heard").json()
    return found


def test_fork_start_method_with_a_network_client(
    request: pytest.FixtureRequest, tmp_path: Path, app_name: str
) -> None:
    """Workers forked from a main process that used the Redis client (seeding the defaults)
    each open clients of their own."""
    env = {**worker_env("aioredis", request, app_name), "SYNCHRO_FORK": "1"}
    with SanicServer.cli(tmp_path, "--workers", "2", env=env) as server:
        server.wait_workers(2)
        bodies = server.hammer_paths(["/inc", "/inc-def"] * 300, concurrency=40)
        assert values_of(bodies) == list(range(1, 601))
        assert set(server.counts_by_worker(2).values()) == {"600"}
        assert server.library_tracebacks() == []


# -- coordination across real workers ----------------------------------------------------------

LEADER_TTL = 2.0


def runs_of(server: SanicServer) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = server.get("/runs").json()["runs"]
    return runs


def test_coordination_across_four_workers(served: SanicServer) -> None:
    """Rate limits, semaphores, renewed locks, fencing tokens and a leader task, on every
    interface, with four real workers."""
    server = served

    # A daily budget of 100 (nothing refills during the test): exactly 100 of 250 pass,
    # each remaining count is handed out once.
    burst_started = time.monotonic()
    answers = server.responses("/limited-day", 250, concurrency=50)
    burst = time.monotonic() - burst_started
    allowed = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert (len(allowed), len(refused)) == (100, 150), {a.status_code for a in answers}
    # one budget for all: every worker refuses now, those that let none pass included
    assert set(server.statuses_by_worker("/limited-day", 4).values()) == {429}
    remaining = sorted(int(a.headers["RateLimit-Remaining"]) for a in allowed)
    assert remaining == list(range(100))
    assert {a.headers["RateLimit-Limit"] for a in answers} == {"100"}
    # the next slot of a 100/day budget is 864 s after the first request (86400/100),
    # less what passed since: each refused answer asks for about that, never less
    waits = sorted({int(a.headers["Retry-After"]) for a in refused})
    assert 864 - math.ceil(burst) - 1 <= waits[0] <= waits[-1] <= 864, (waits, burst)

    # 100 per 10 s refills one request every 0.1 s: 100 pass, plus what refilled while
    # the burst ran; a refused request's Retry-After, waited, admits the next one.
    started = time.monotonic()
    answers = server.responses("/limited", 250, concurrency=100)
    elapsed = time.monotonic() - started
    passed = sum(a.status_code == 200 for a in answers)
    assert 100 <= passed <= 100 + math.ceil(elapsed / 0.1), (passed, elapsed)
    refused = [a for a in answers if a.status_code == 429]
    assert refused
    assert {a.headers["Retry-After"] for a in refused} == {"1"}
    time.sleep(int(refused[-1].headers["Retry-After"]))  # the wait the answer asks for
    assert server.get("/limited").status_code == 200

    # A handler's own HTTP error keeps the rate-limit headers.
    teapot = server.request("/raise-teapot")
    assert teapot.status_code == 418
    assert teapot.headers["RateLimit-Limit"] == "1000"

    # A semaphore of 3, 60 requests from four workers: 3 inside at once, never 4.
    server.hammer("/semaphore", 60, concurrency=30)
    levels = server.get("/get/pool_level:3").json()["value"]
    assert levels is not None
    assert levels > 0
    assert server.get("/get/pool_level:4").json()["value"] is None

    # A lock renewed automatically, held for two and a half times its ttl, stays exclusive.
    with ThreadPoolExecutor(1) as pool:
        hold = pool.submit(server.request, "/renewed-hold/2.5")
        wait_for(
            lambda: server.get("/get/renewed_holder").json()["value"] is not None,
            what="the lock holder inside",
        )
        contended = []
        while not hold.done():
            contended.append(server.get("/renewed-contend").json())
        held = hold.result().json()
    assert held["lost"] is False
    # Never taken while the holder was inside (an attempt answered between the release and
    # the holder's own answer takes it, with nobody inside).
    assert all(c["result"] == "busy" or c["holder_inside"] is None for c in contended)
    busy = [c for c in contended if c["result"] == "busy"]
    assert len(busy) > 10, contended
    assert len({c["pid"] for c in busy}) > 1
    after = server.get("/renewed-contend").json()
    assert after["result"] == "taken"
    assert after["holder_inside"] is None

    # Fencing tokens strictly increase over 300 acquisitions from four workers.
    bodies = server.hammer("/fenced", 300, concurrency=40)
    ordered = sorted(tuple(map(int, body.split())) for body in bodies)
    assert [order for order, _ in ordered] == list(range(1, 301))
    tokens = [token for _, token in ordered]
    assert all(a < b for a, b in itertools.pairwise(tokens))

    # The leader task ran in one worker only, all along.
    runs = runs_of(server)
    assert len(runs) == 1, runs


@pytest.mark.parametrize("kind", WORKERS)
def test_leader_task_moves_to_another_worker_when_its_worker_dies_and_a_clear_is_seen(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, app_name: str
) -> None:
    env = {**worker_env(kind, request, app_name), "SYNCHRO_LEADER": str(LEADER_TTL)}
    with SanicServer.cli(tmp_path, "--workers", "4", env=env) as server:
        server.wait_workers(4)
        # The first run beats past its first lease (renewed), and nobody else starts one.
        first = wait_for(
            lambda: (
                (r := runs_of(server)) and r[0]["last"] - r[0]["start"] >= 1.5 * LEADER_TTL and r
            ),
            what="the leader running for one and a half leases",
        )
        assert len(first) == 1, first
        leader = first[0]["pid"]
        os.kill(leader, signal.SIGKILL)
        killed_at = time.time()
        runs = wait_for(
            lambda: len(r := runs_of(server)) >= 2 and r[1] is not None and r,
            what="another worker leading",
        )
        successor = runs[1]
        assert successor["pid"] != leader
        # within ttl + 1 s (memcached ends a lease up to two of its whole seconds late)
        late = 2 * KINDS[kind].ttl_resolution
        assert successor["start"] - killed_at <= LEADER_TTL + 1.0 + late, (successor, killed_at)
        assert successor["start"] >= runs[0]["last"]  # never beside the dead leader's run
        assert len(runs) == 2, runs

        # keys (where the backend lists them) and a clear, seen by every worker left
        server.get("/set/shared/written-once")
        if KINDS[kind].lists_keys:
            listed = server.from_every_worker("/keys", 3)
            assert all("shared" in reply["keys"] for reply in listed.values())
        server.get("/clear")
        cleared = server.from_every_worker("/get/shared", 3)
        assert {reply["value"] for reply in cleared.values()} == {None}


#: Values whose bytes orjson and the standard encoder could write differently: the two
#: workers below must agree on every one of them.
AGREEING_VALUES: list[Any] = [
    {"user": "ada", "roles": ["admin", "dev"], "visits": 12},
    {"f": 1e-05, "g": [1e16, 0.1, -0.0]},
    {"日本": "é", "k": 'q"\\\x7f\n'},
    [2**64, -(2**63), 2**63 - 1],
    {"b": {"z": 1, "a": [None, True]}, "a": []},
    "plain",
    7,
]


def test_workers_with_and_without_orjson_agree_on_compare_and_set(tmp_path: Path) -> None:
    """Two workers of one app: worker 0 reads and writes with orjson, worker 1 without.
    Each compare_and_set expects the value the other worker wrote: it must swap."""
    env = {"SYNCHRO_FAST_JSON": "split"}
    with SanicServer.cli(tmp_path, "--workers", "2", env=env) as server:
        server.wait_workers(2)

        def on(fast: bool, operation: str, **body: Any) -> Any:
            """Post until the worker with (or without) orjson took it; the other one
            answers 409 and does nothing."""

            def attempt() -> Any:
                response = server.request(
                    f"/json/{operation}", method="POST", json_body={"fast": fast, **body}
                )
                if response.status_code == 409:
                    return None
                assert response.status_code == 200, response.text
                assert response.json()["fast"] is fast
                return response.json()

            return wait_for(attempt, what=f"a worker with fast={fast}")["done"]

        for number, value in enumerate(AGREEING_VALUES):
            key, other = f"agree{number}", json.dumps(["other", number])
            for writer in (True, False):
                assert on(writer, "set", key=key, value=json.dumps(value))
                swapped = on(not writer, "compare_and_set", key=key,
                             expected=json.dumps(value), new=other)  # fmt: skip
                assert swapped is True, (value, writer)
                assert on(writer, "compare_and_set", key=key, expected=other,
                          new=json.dumps(value)) is True  # fmt: skip
        # and a value that differs only as JSON does (1.0 is not 1) does not swap
        assert on(True, "set", key="one", value="[1.0]")
        assert on(False, "compare_and_set", key="one", expected="[1]", new="[2]") is False


def test_every_operation_is_shared_between_workers(served: SanicServer) -> None:
    """set/get, set_default, compare_and_set, lock exclusion, expire/ttl, keys/clear, on
    every interface, across four real workers."""
    server = served
    # set in one worker, get in all
    server.get("/set/shared/written-once")
    answers = server.from_every_worker("/get/shared", 4)
    assert {reply["value"] for reply in answers.values()} == {"written-once"}
    # set_default in every worker's after_server_start: all saw the first one's value
    seeds = server.get("/seeds").json()
    assert set(seeds["seen"].values()) == {seeds["seed"]}
    # compare_and_set from all workers at once: no append lost
    server.hammer_paths([f"/cas-append/{i}" for i in range(100)], concurrency=20)
    assert sorted(server.get("/get/appended").json()["value"]) == list(range(100))
    # a lock excludes across workers
    server.get("/reset-locks")
    server.hammer("/locked", 100, concurrency=20)
    assert server.get("/lock-stats").json() == {"violations": 0, "entered": 100, "inside": 0}
    # an expiry set in one worker is seen, and honoured, by all
    server.get("/set-ttl/brief/soon-gone/30")
    ttls = server.from_every_worker("/ttl/brief", 4)
    assert all(25 < reply["ttl"] <= 31 for reply in ttls.values()), ttls
    server.get("/set-ttl/brief/soon-gone/0.5")
    wait_for(
        lambda: all(r["value"] is None for r in server.from_every_worker("/get/brief", 4).values()),
        what="the expired key gone in every worker",
    )
    # keys and clear: in the leader test below, on a server of its own (a clear here would
    # end the shared server's leader lease under the other tests)
