"""Faults under load on real multi-worker servers: worker restarts, a killed manager."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .backends import RedisServer
from .registry import SERVED_BY
from .servers import SanicServer, manager_processes_watching, pids_of, wait_for

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("kind", ["syncmanager", "aioredis"])
def test_restarting_all_workers_mid_load_loses_no_increment(
    kind: str, tmp_path: Path, app_name: str, redis_server: RedisServer
) -> None:
    env = {"SYNCHRO_INTERFACE": kind, "SYNCHRO_PREFIX": f"{app_name}:"}
    if kind == "aioredis":
        env["SYNCHRO_REDIS_URL"] = redis_server.url
    with SanicServer.cli(tmp_path, "--workers", "2", env=env) as server:
        server.wait_workers(2)
        server.assert_served_by(SERVED_BY[kind], 2)
        before = {server.get_fresh("/pid") for _ in range(10)}
        answered, failed = server.hammer_through(
            "/inc", 1_500, concurrency=20, midway="/restart-workers", after=300
        )
        server.wait_workers(4)  # both workers started again
        after = {server.get_fresh("/pid") for _ in range(10)}
        assert before.isdisjoint(after), "the workers were not restarted"
        values = sorted(int(body.split()[0]) for body in answered)
        assert len(values) == len(set(values))  # no value handed out twice
        final = int(server.get("/count").text)
        # every acknowledged increment is counted; unanswered ones may or may not be
        assert len(answered) <= final <= len(answered) + failed
        assert final == values[-1] or failed > 0
        assert len(pids_of(answered)) >= 2


def test_a_killed_manager_is_replaced_and_the_workers_carry_on(tmp_path: Path) -> None:
    """kill -9 of the manager: the main process starts a new one, seeded with the app's
    defaults before any worker can reach it; workers reconnect by themselves and each one
    hears about it (the synchro.store.reset signal)."""
    with SanicServer.cli(tmp_path, "--workers", "2") as server:
        server.wait_workers(2)
        assert server.process is not None
        (manager,) = manager_processes_watching(server.process.pid)
        assert len(server.hammer("/inc", 200)) == 200
        assert server.get("/count").text == "200"
        os.kill(manager, signal.SIGKILL)
        killed = time.monotonic()
        failures = 0

        def serving_again() -> bool:
            nonlocal failures
            response = server.request("/count")
            failures += response.status_code != 200
            return response.status_code == 200

        wait_for(serving_again, timeout=20, what="a new manager")
        recovered = time.monotonic() - killed
        (replacement,) = manager_processes_watching(server.process.pid)
        assert replacement != manager
        # the new store holds the defaults (seeded before any worker met it), nothing else
        assert set(server.counts_by_worker(2).values()) == {"0"}
        assert server.get("/get/seed").json()["value"] is None
        assert len(server.hammer("/inc", 100)) == 100
        assert server.get("/count").text == "100"

        def every_worker_heard() -> bool:
            heard = {}
            for body in server.bodies_on_fresh_connections("/resets", 4):
                count, pid = body.split()
                heard[pid] = int(count)
            return len(heard) == 2 and min(heard.values()) >= 1

        wait_for(every_worker_heard, what="the reset signal in both workers")
        print(f"manager replaced: requests served again {recovered:.2f} s after the kill "
              f"({failures} failed meanwhile)")  # fmt: skip
        assert "synchro manager restarted" in server.log()


def _leader_runs(log: Path) -> dict[str, tuple[float, float]]:
    """Each run of the leader job in ``log``: (first beat, last beat)."""
    runs: dict[str, tuple[float, float]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            ident, at = line.split()
            first, _ = runs.get(ident, (float(at), float(at)))
            runs[ident] = (first, float(at))
    return runs


def assert_leaders_never_overlap(
    tmp_path: Path, env: dict[str, str], ttl: float, fault: Callable[[SanicServer], None]
) -> None:
    """Serve the leader task "recorder" (``ttl``) on two workers, its runs logged to a file
    (it outlives any store); once one leads, apply ``fault``; once another run started
    after it, check that no two runs overlapped."""
    log = tmp_path / "leaders.log"
    env = {**env, "SYNCHRO_LEADER": str(ttl), "SYNCHRO_LEADER_LOG": str(log)}
    with SanicServer.cli(tmp_path, "--workers", "2", env=env) as server:
        server.wait_workers(2)
        wait_for(lambda: len(_leader_runs(log)) == 1, what="a leader running")
        fault(server)
        faulted = time.monotonic()
        wait_for(
            lambda: any(first > faulted for first, _ in _leader_runs(log).values()),
            timeout=4 * ttl + 10,
            what="a leader again after the fault",
        )
    runs = sorted(_leader_runs(log).values())
    for (_, end), (start, _) in itertools.pairwise(runs):
        assert end < start, f"two leaders at once: {runs}"


@pytest.mark.parametrize("ttl", [3.0, 6.0])
def test_a_killed_manager_never_lets_two_leaders_run(tmp_path: Path, ttl: float) -> None:
    """kill -9 of the manager while a leader task runs: the new manager is empty, but it
    grants no lease before the old one's could have ended, and the old leader learns at
    its next renewal that its lease is gone: the runs never overlap (they did by 0.48 to
    2.18 s, 4 of 4 times)."""

    def kill_the_manager(server: SanicServer) -> None:
        assert server.process is not None
        (manager,) = manager_processes_watching(server.process.pid)
        os.kill(manager, signal.SIGKILL)

    assert_leaders_never_overlap(tmp_path, {}, ttl, kill_the_manager)


@pytest.mark.parametrize("kind", ["aioredis", "asyncio_redis"])
def test_a_redis_restarted_empty_never_lets_two_leaders_run(tmp_path: Path, kind: str) -> None:
    """A Redis without persistence killed and started again under a running leader task:
    the new server grants no lease while one of the old server's could still run, and the
    old leader learns at its next renewal that its lease is gone: the runs never overlap."""
    redis = RedisServer(tmp_path).start()

    def restart_redis(server: SanicServer) -> None:
        redis.kill()
        redis.start()

    env = {"SYNCHRO_INTERFACE": kind, "SYNCHRO_REDIS_URL": redis.url}
    try:
        # renewals every 2 s: a follower polls (every second at most) before the old leader
        # renews, so without the check a successor would start beside it
        assert_leaders_never_overlap(tmp_path, env, 6.0, restart_redis)
    finally:
        redis.stop()


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
