"""Every run mode of DESIGN.md, each showing the state shared wherever it can be."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sanic import Request, Sanic
from sanic.response import text
from sanic_testing.reusable import ReusableClient

from sanic_synchro_ctx import Synchro, SyncManager

from .httpclient import TransportError
from .servers import (
    REPO,
    SanicServer,
    assert_stopped_cleanly,
    free_port,
    values_of,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)

APP_FILE = REPO / "tests" / "apps" / "workers_app.py"

MODES: dict[str, tuple[list[str], dict[str, str], int]] = {
    # name: (arguments after `python`, environment, workers)
    "app.run(workers=2)": ([str(APP_FILE)], {"WORKERS": "2", "PYTHONPATH": str(REPO)}, 2),
    "sanic --workers 2": (["--workers", "2"], {}, 2),
    "sanic --single-process": (["--single-process"], {}, 1),
    'start_method = "fork"': (["--workers", "2"], {"SYNCHRO_FORK": "1"}, 2),
    "init_app in a listener, --workers 2": (["--workers", "2"], {"SYNCHRO_FACTORY": "1"}, 2),
    "init_app in a listener, --single-process": (
        ["--single-process"],
        {"SYNCHRO_FACTORY": "1"},
        1,
    ),
}


def make_server(log_dir: Path, mode: str) -> SanicServer:
    args, env, _ = MODES[mode]
    if args and args[0].endswith(".py"):
        return SanicServer(args, log_dir, env=env)
    return SanicServer.cli(log_dir, *args, env=env)


@pytest.mark.parametrize("mode", list(MODES))
def test_increments_are_shared_and_exact(tmp_path: Path, mode: str) -> None:
    workers = MODES[mode][2]
    server = make_server(tmp_path, mode).start()
    try:
        server.wait_workers(workers)
        server.assert_served_by("SyncManager", workers)
        bodies = server.hammer_paths(["/inc", "/inc-def"] * 300, concurrency=40)
        assert values_of(bodies) == list(range(1, 601)), server.log()
        assert server.get("/count").text == "600"
        assert set(server.counts_by_worker(workers).values()) == {"600"}
        assert server.get("/kinds").text == "SynchroContext"
        assert server.get("/kinds-def").text == "BlockingSynchroContext"
        assert server.process is not None
        main_pid = server.process.pid
    finally:
        # Several workers: Sanic's monitor message, whose shutdown runs in the main loop (a
        # SIGINT there can land inside Sanic's own worker-state proxy call, see
        # SanicServer.terminate; test_workers.py stops one with SIGINT). One process: SIGINT.
        code = server.terminate() if workers > 1 else server.stop()
    # The main process starts (and stops) the manager, except where no main-process
    # listener runs: one process, or init_app inside a worker's listener.
    listener_in_main = workers > 1 and "SYNCHRO_FACTORY" not in MODES[mode][1]
    assert_stopped_cleanly(server, code, main_pid, main_stops_manager=listener_in_main)


def test_inmemory_with_workers_warns(tmp_path: Path) -> None:
    server = SanicServer.cli(tmp_path, "--workers", "2", env={"SYNCHRO_INTERFACE": "inmemory"})
    with server:
        pids: set[str] = set()
        wait_for(lambda: pids.add(server.get_fresh("/pid")) or len(pids) == 2, what="2 workers")
        server.wait_main_monitoring()
    assert "InMemory keeps one copy of the context per process" in server.log()


def test_dev_mode_auto_reload_keeps_the_state(tmp_path: Path) -> None:
    """--dev restarts the worker when a source file changes; the manager and data survive."""
    app_copy = tmp_path / "reloading_app.py"
    shutil.copy(APP_FILE, app_copy)
    args = ["-m", "sanic", "reloading_app:app", "--host", "127.0.0.1", "--port", "{port}"]
    server = SanicServer([*args, "--dev", "--no-repl", "--no-motd"], tmp_path, cwd=tmp_path)
    server.env["PYTHONPATH"] = os.pathsep.join([str(REPO), server.env.get("PYTHONPATH", "")])
    with server:
        server.wait_workers(1)
        assert values_of(server.hammer("/inc", 100, concurrency=10)) == list(range(1, 101))
        before = server.get("/pid").text
        app_copy.write_text(app_copy.read_text() + "\n# touched to trigger a reload\n")
        wait_for(lambda: _pid_or_none(server) not in (None, before), what="a reloaded worker")
        assert server.get("/count").text == "100"
        assert server.get("/inc").text.split()[0] == "101"


def _pid_or_none(server: SanicServer) -> str | None:
    try:
        return server.request("/pid", timeout=2).text
    except TransportError:
        return None


def test_make_demo_script_counts_exactly(tmp_path: Path) -> None:
    """examples/demo.py (what `make demo` runs): examples/counter.py with 4 workers."""
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "final count: 1000" in result.stdout


# -- sanic-testing clients: one process, a server started and stopped per request --------


def counter_app(name: str, *, factory: bool = False) -> Sanic[Any, Any]:
    app = Sanic(name)
    if factory:
        synchro = Synchro()

        @app.before_server_start
        async def install(app: Sanic[Any, Any]) -> None:
            synchro.init_app(app)

    else:
        Synchro(app)

    @app.get("/inc")
    async def inc(request: Request) -> Any:
        return text(str(await request.ctx.synchro.increment("counter")))

    @app.get("/inc-def")
    def inc_def(request: Request) -> Any:
        return text(str(request.ctx.synchro.increment("counter")))

    return app


@pytest.mark.parametrize("factory", [False, True], ids=["import-time", "in-listener"])
def test_sanic_test_client_keeps_state_across_server_runs(app_name: str, factory: bool) -> None:
    app = counter_app(app_name, factory=factory)
    seen = [app.test_client.get(path)[1].text for path in ["/inc", "/inc-def", "/inc"]]
    assert seen == ["1", "2", "3"]
    assert isinstance(app.ctx.synchro.interface, SyncManager)
    assert repr(app.ctx.synchro.interface) == "SyncManager(in-process)"


@pytest.mark.parametrize("factory", [False, True], ids=["import-time", "in-listener"])
async def test_sanic_asgi_test_client_shares_state(app_name: str, factory: bool) -> None:
    app = counter_app(app_name, factory=factory)
    seen = []
    for path in ["/inc", "/inc-def", "/inc"]:
        _, response = await app.asgi_client.get(path)
        seen.append(response.text)
    assert seen == ["1", "2", "3"]


def test_reusable_client_shares_state(app_name: str) -> None:
    app = counter_app(app_name)
    client = ReusableClient(app, port=free_port())
    with client:
        seen = [client.get(path)[1].text for path in ["/inc", "/inc-def", "/inc"]]
    assert seen == ["1", "2", "3"]
    with ReusableClient(app, port=free_port()) as again:
        assert again.get("/inc")[1].text == "4"


# -- ASGI servers with several worker processes ------------------------------------------------


def uvicorn_server(log_dir: Path, env: dict[str, str]) -> SanicServer:
    args = ["-m", "uvicorn", "tests.apps.workers_app:app", "--host", "127.0.0.1"]
    return SanicServer([*args, "--port", "{port}", "--workers", "2"], log_dir, env=env)


@pytest.mark.parametrize("kind", ["syncmanager", "inmemory"])
def test_uvicorn_workers_share_exactly_or_are_warned(tmp_path: Path, kind: str) -> None:
    """uvicorn --workers 2 runs no Sanic main process: the default SyncManager's workers
    meet at one manager keyed by uvicorn's process (counts stay exact); InMemory cannot
    share, and each worker says so (it split silently: 105 and 895 of 1,000)."""
    with uvicorn_server(tmp_path, {"SYNCHRO_INTERFACE": kind}) as server:
        pids: set[str] = set()
        wait_for(lambda: pids.add(server.get_fresh("/pid")) or len(pids) == 2, what="2 workers")
        server.assert_served_by({"syncmanager": "SyncManager", "inmemory": "InMemory"}[kind], 2)
        if kind == "inmemory":
            wait_for(lambda: server.log().count("will not share it") == 2, what="warnings")
        else:
            bodies = server.hammer("/inc", 1_000, concurrency=40)
            assert values_of(bodies) == list(range(1, 1_001))
            assert set(server.counts_by_worker(2).values()) == {"1000"}  # both see all of them
            assert server.library_tracebacks() == []


def test_a_backend_down_at_start_stops_the_app_with_a_clear_message(tmp_path: Path) -> None:
    """A dead Redis at start: Sanic's main process exits, saying what is unreachable,
    instead of running workers that can only fail (or hang)."""
    env = {"SYNCHRO_INTERFACE": "aioredis", "SYNCHRO_REDIS_URL": f"redis://127.0.0.1:{free_port()}"}
    server = SanicServer.cli(tmp_path, "--workers", "2", env=env)
    with pytest.raises(AssertionError, match="server exited"):
        server.start(timeout=60)
    assert server.process is not None
    assert server.process.returncode != 0
    log = server.log()
    assert "is unreachable at start" in log, log
    assert "AIORedis(Redis)" in log, log
