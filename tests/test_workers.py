"""Real multi-worker runs: ``python -m sanic tests.apps.workers_app:app --workers N``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import SanicServer, manager_processes_watching, values_of, wait_for

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
    # Sanic's main process ran its stop listeners (which stop our manager). Its exit code
    # is not asserted: a SIGINT handled while its monitor loop is mid-call on Sanic's own
    # manager connection can fail that call (a Sanic race, outside this library).
    assert "Server Stopped" in server.log(), (code, server.log())
    # The manager is gone at once (main-process manager) or as soon as it sees main exit.
    wait_for(lambda: manager_processes_watching(main_pid) == [], timeout=10, what="no manager")
