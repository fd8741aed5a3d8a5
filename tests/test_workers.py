"""Real multi-worker runs: ``python -m sanic tests.apps.workers_app:app --workers N``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .registry import KINDS, WORKERS
from .servers import (
    SanicServer,
    assert_stopped_cleanly,
    manager_processes_watching,
    values_of,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def four_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SanicServer]:
    server = SanicServer.cli(tmp_path_factory.mktemp("logs"), "--workers", "4")
    with server:
        server.wait_workers(4)
        yield server


@pytest.mark.parametrize("workers", [2, 4])
def test_2000_concurrent_increments_are_exact(tmp_path: Path, workers: int) -> None:
    with SanicServer.cli(tmp_path, "--workers", str(workers)) as server:
        server.wait_workers(workers)
        bodies = server.hammer("/inc", 2_000, concurrency=50)
        assert values_of(bodies) == list(range(1, 2_001))  # every value handed out once
        assert server.get("/count").text == "2000"
        # Every worker, asked on a fresh connection, sees the same total.
        assert set(server.counts_by_worker(workers).values()) == {"2000"}


def test_async_and_def_handlers_share_one_counter(four_workers: SanicServer) -> None:
    start = int(four_workers.get("/count").text)
    bodies = four_workers.hammer_paths(["/inc", "/inc-def"] * 500, concurrency=40)
    assert values_of(bodies) == list(range(start + 1, start + 1_001))
    assert four_workers.get("/count").text == str(start + 1_000)


def test_set_default_in_every_worker_lands_once(four_workers: SanicServer) -> None:
    seeds = four_workers.get("/seeds").json()
    assert seeds["started"] == 4
    assert len(seeds["seen"]) == 4, seeds  # four workers each ran set_default ...
    assert set(seeds["seen"].values()) == {seeds["seed"]}  # ... and all saw the first one's
    assert f"seen:{seeds['seed']}" in seeds["seen"]
    # A listener registered before Synchro(app) ran after it, on the shared store, in all four.
    assert seeds["early_starts"] == 4


def test_a_value_set_by_one_worker_is_read_by_another(four_workers: SanicServer) -> None:
    writer = four_workers.get("/set/shared-key/written-once").text

    def read_from_another_worker() -> dict[str, object] | None:
        reply = four_workers.get("/get/shared-key").json()
        return reply if str(reply["pid"]) != writer else None

    reply = wait_for(read_from_another_worker, what="a read served by another worker")
    assert reply["value"] == "written-once"


def test_lock_held_by_one_worker_excludes_the_others(four_workers: SanicServer) -> None:
    # Control: without the lock the critical sections overlap, and the counters show it.
    four_workers.get("/reset-locks")
    four_workers.hammer("/unlocked", 300, concurrency=30)
    control = four_workers.get("/lock-stats").json()
    assert control["violations"] > 0, control

    four_workers.get("/reset-locks")
    four_workers.hammer("/locked", 300, concurrency=30)
    assert four_workers.get("/lock-stats").json() == {"violations": 0, "entered": 300, "inside": 0}

    four_workers.get("/reset-locks")
    four_workers.hammer("/locked-def", 200, concurrency=20)
    assert four_workers.get("/lock-stats").json() == {"violations": 0, "entered": 200, "inside": 0}


def test_one_manager_runs_and_stops_with_the_server(tmp_path: Path) -> None:
    server = SanicServer.cli(tmp_path, "--workers", "2").start()
    try:
        server.wait_workers(2)
        assert server.process is not None
        main_pid = server.process.pid
        assert len(manager_processes_watching(main_pid)) == 1
    finally:
        code = server.stop()
    assert_stopped_cleanly(server, code, main_pid)


# -- every interface across real workers -------------------------------------------------------


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


def from_every_worker(server: SanicServer, path: str, workers: int) -> dict[int, Any]:
    """``path`` as each of ``workers`` workers answers it (JSON with a "pid")."""
    seen: dict[int, Any] = {}

    def all_answered() -> bool:
        for body in server.bodies_on_fresh_connections(path, 2 * workers):
            reply = json.loads(body)
            seen[reply["pid"]] = reply
        return len(seen) >= workers

    wait_for(all_answered, what=f"{path} from {workers} workers")
    return seen


@pytest.mark.parametrize("kind", WORKERS)
def test_every_operation_is_shared_between_workers(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, app_name: str
) -> None:
    """set/get, set_default, compare_and_set, lock exclusion, expire/ttl, keys/clear, on
    every interface, across two real workers."""
    env = worker_env(kind, request, app_name)
    with SanicServer.cli(tmp_path, "--workers", "2", env=env) as server:
        server.wait_workers(2)
        # set in one worker, get in both
        server.get("/set/shared/written-once")
        answers = from_every_worker(server, "/get/shared", 2)
        assert {reply["value"] for reply in answers.values()} == {"written-once"}
        # set_default in both workers' after_server_start: both saw the first one's value
        seeds = server.get("/seeds").json()
        assert set(seeds["seen"].values()) == {seeds["seed"]}
        # compare_and_set from both workers at once: no append lost
        server.hammer_paths([f"/cas-append/{i}" for i in range(100)], concurrency=20)
        assert sorted(server.get("/get/appended").json()["value"]) == list(range(100))
        # a lock excludes across workers
        server.get("/reset-locks")
        server.hammer("/locked", 100, concurrency=20)
        assert server.get("/lock-stats").json() == {"violations": 0, "entered": 100, "inside": 0}
        # an expiry set in one worker is seen, and honoured, by both
        server.get("/set-ttl/brief/soon-gone/30")
        ttls = from_every_worker(server, "/ttl/brief", 2)
        assert all(25 < reply["ttl"] <= 31 for reply in ttls.values()), ttls
        server.get("/set-ttl/brief/soon-gone/0.5")
        wait_for(
            lambda: all(
                r["value"] is None for r in from_every_worker(server, "/get/brief", 2).values()
            ),
            what="the expired key gone in both workers",
        )
        # keys and clear
        if KINDS[kind].lists_keys:
            listed = from_every_worker(server, "/keys", 2)
            assert all("shared" in reply["keys"] for reply in listed.values())
        server.get("/clear")
        cleared = from_every_worker(server, "/get/shared", 2)
        assert {reply["value"] for reply in cleared.values()} == {None}
        assert server.library_tracebacks() == []
        assert server.process is not None
    assert server.process.returncode == 0, server.log()


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
