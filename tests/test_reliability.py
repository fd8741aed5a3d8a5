"""Faults under load on real multi-worker servers: worker restarts, a killed manager."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from .backends import RedisServer
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


def test_a_killed_manager_fails_fast_and_the_worker_keeps_serving(tmp_path: Path) -> None:
    with SanicServer.cli(tmp_path, "--workers", "2") as server:
        server.wait_workers(2)
        assert server.process is not None
        (manager,) = manager_processes_watching(server.process.pid)
        assert server.get("/inc").text.split()[0] == "1"
        os.kill(manager, signal.SIGKILL)
        wait_for(lambda: not os.path.exists(f"/proc/{manager}/cmdline") or _zombie(manager))
        for _ in range(10):
            started = time.monotonic()
            response = httpx.get(server.base_url + "/inc", timeout=30)
            assert response.status_code == 500
            assert time.monotonic() - started < 5
        assert server.get("/pid").status_code == 200  # other routes keep working
        assert "SynchroConnectionError" in server.log()


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
