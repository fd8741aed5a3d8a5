"""LMDB beyond the contract: restarts, several processes on one file, crashes, a full map."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sanic import Sanic

from sanic_synchro_ctx import LMDB, Synchro, SynchroError

from .servers import REPO, SanicServer, values_of, wait_for

pytestmark = pytest.mark.timeout(300)


def context(app_name: str, interface: LMDB) -> object:
    app = Sanic(app_name)
    Synchro(app, interface=interface)
    return app.ctx.synchro.sync


def test_data_counters_and_unexpired_ttls_survive_a_restart(tmp_path: Path, app_name: str) -> None:
    path = str(tmp_path / "db")
    first = LMDB(path, prefix="restart")
    first.run_blocking(first.update({"doc": {"a": [1]}, "long-lived": 1}))
    first.run_blocking(first.set("kept", "yes", ttl=3600))
    first.run_blocking(first.set("gone", "soon", ttl=0.2))
    first.run_blocking(first.increment("n", 41))
    first.run_blocking(first.set("k" * 2_000, "a hashed key"))  # beyond LMDB's key limit
    first.close()
    time.sleep(0.3)  # the 0.2 s TTL passes while nothing has the file open
    second = LMDB(path, prefix="restart")
    assert second.run_blocking(second.get_many(["doc", "long-lived", "kept", "gone"])) == {
        "doc": {"a": [1]},
        "long-lived": 1,
        "kept": "yes",
    }
    left = second.run_blocking(second.ttl("kept"))
    assert left is not None
    assert 3590 < left <= 3600
    assert second.run_blocking(second.increment("n")) == 42
    assert "k" * 2_000 in second.run_blocking(second.keys())
    second.close()


def test_an_lmdb_file_is_not_open_twice_in_one_process(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    one, two = LMDB(path, prefix="one"), LMDB(path, prefix="two")
    one.run_blocking(one.set("k", 1))
    two.run_blocking(two.set("k", 2))
    one.close()
    assert two.run_blocking(two.get("k")) == 2  # the shared environment is still open
    two.close()


def test_a_full_map_is_a_typed_error_with_nothing_half_written(tmp_path: Path) -> None:
    interface = LMDB(str(tmp_path / "small"), map_size=1 << 20, prefix="full")

    def write(batch: int) -> None:
        interface.run_blocking(interface.update({f"k{batch}-{i}": "x" * 900 for i in range(10)}))

    written = 0
    while written < 10_000:
        try:
            write(written)
        except SynchroError:
            break
        written += 1
    with pytest.raises(SynchroError, match="store full"):
        write(written)
    assert written > 0
    # every batch that was acknowledged is there, whole; the refused one wrote nothing
    stored = interface.run_blocking(interface.keys())
    assert len(stored) == 10 * written
    assert interface.run_blocking(interface.get(f"k{written}-0")) is None
    interface.close()


def test_two_separate_apps_on_one_path_share_a_counter_with_no_manager(tmp_path: Path) -> None:
    env = {"SYNCHRO_INTERFACE": "lmdb", "SYNCHRO_LMDB_PATH": str(tmp_path / "shared")}
    one = SanicServer.cli(tmp_path, "--single-process", env=env).start()
    two = SanicServer.cli(tmp_path, "--single-process", env=env).start()
    try:
        one.assert_served_by("LMDB", 1)
        two.assert_served_by("LMDB", 1)
        paths = ["/inc"] * 500
        bodies = one.hammer_paths(paths, 25) + two.hammer_paths(paths, 25)
        assert values_of(bodies) == list(range(1, 1_001))
        assert one.get("/count").text == two.get("/count").text == "1000"
    finally:
        one.stop()
        two.stop()


CRASHER = """
import sys
from sanic_synchro_ctx import LMDB
interface = LMDB(sys.argv[1], prefix="crash")
while True:
    value = interface.run_blocking(interface.increment("n"))
    sys.stdout.write(f"{value}\\n")
    sys.stdout.flush()
"""


def test_a_writer_killed_mid_write_loses_no_acknowledged_increment(
    tmp_path: Path, rng: random.Random
) -> None:
    """20 times: SIGKILL a process in a tight increment loop. The store opens, holds every
    increment the process acknowledged (the one in flight may or may not be there), and a
    new writer is not blocked by the dead one's lock."""
    path = str(tmp_path / "crash")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(20):
        writer = subprocess.Popen(
            [sys.executable, "-c", CRASHER, path], stdout=subprocess.PIPE, env=env
        )
        assert writer.stdout is not None
        writer.stdout.readline()  # it is writing
        time.sleep(rng.uniform(0, 0.05))  # kill it at a random point of its loop
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        acknowledged = [int(line) for line in writer.stdout.read().split()]
        last = acknowledged[-1] if acknowledged else None
        check = LMDB(path, prefix="crash")
        stored = check.run_blocking(check.get("n"))
        if last is not None:
            assert last <= stored <= last + 1, (last, stored)
        started = time.monotonic()
        assert check.run_blocking(check.increment("n")) == stored + 1
        assert time.monotonic() - started < 5  # the dead writer's lock was recovered
        check.close()


def test_fork_start_method(tmp_path: Path) -> None:
    """Workers forked from the main process (which seeded the defaults through the file)
    open their own environment."""
    env = {"SYNCHRO_INTERFACE": "lmdb", "SYNCHRO_FORK": "1"}
    with SanicServer.cli(tmp_path, "--workers", "2", env=env) as server:
        server.wait_workers(2)
        bodies = server.hammer_paths(["/inc", "/inc-def"] * 300, concurrency=40)
        assert values_of(bodies) == list(range(1, 601))
        assert set(server.counts_by_worker(2).values()) == {"600"}
        assert server.library_tracebacks() == []


def test_the_private_directory_lives_as_long_as_the_app(tmp_path: Path) -> None:
    """LMDB() without a path makes its directory in the temporary directory (TMPDIR, here
    one of this test's own, so nothing else writes there) and removes it at shutdown."""
    # short: Python's multiprocessing (Sanic's worker state) binds an AF_UNIX socket in
    # TMPDIR, whose path may not exceed 107 bytes (under tmp_path it failed once the run
    # counter of pytest's base directory reached three digits)
    temporary = Path(tempfile.mkdtemp(prefix="lmdb-"))
    env = {"SYNCHRO_INTERFACE": "lmdb", "TMPDIR": str(temporary)}
    try:
        with SanicServer.cli(tmp_path, "--workers", "2", env=env) as server:
            server.wait_workers(2)
            made = [name for name in os.listdir(temporary) if "lmdb" in name]
            assert len(made) == 1, made
            assert (temporary / made[0] / "data.mdb").exists()
        (directory,) = made
        wait_for(lambda: not (temporary / directory).exists(), what="removed")
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
