"""``sanic inspect synchro`` on a real ``sanic ... --workers 2`` app (SynchroInspector)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sanic_synchro_ctx import AIORedis, Memcache, SyncManager
from sanic_synchro_ctx.report import add_up

from .httpclient import TransportError, request
from .servers import SanicServer, free_port, values_of, wait_for
from .test_workers import worker_env

pytestmark = pytest.mark.timeout(180)


def ask(port: int) -> Any:
    """The Inspector's answer to the ``synchro`` action, over its HTTP API."""
    reply = request(port, "/synchro", method="POST", timeout=5.0)
    reply.raise_for_status()
    return reply.json()["result"]


def found_namespace(kind: str, app_name: str) -> str:
    """The key head the workers app uses: its explicit prefix, or the default one."""
    return "synchro/workers_app/synchro:" if kind == "syncmanager" else f"{app_name}:"


@pytest.mark.parametrize("kind", ["syncmanager", "aioredis", "memcache"])
def test_inspect_synchro_shows_every_worker_and_their_operations(
    tmp_path: Path, request: pytest.FixtureRequest, app_name: str, kind: str
) -> None:
    port = free_port()
    env = {
        **worker_env(kind, request, app_name),
        "SANIC_INSPECTOR": "true",
        "SANIC_INSPECTOR_HOST": "127.0.0.1",
        "SANIC_INSPECTOR_PORT": str(port),
        "SANIC_SYNCHRO_REPORT_INTERVAL": "0.2",
    }
    with SanicServer.cli(tmp_path, "--workers", "2", env=env) as server:
        server.wait_workers(2)

        def reports_since(moment: float) -> Any:
            """Both workers' reports, once both wrote one after ``moment``."""
            try:
                found = ask(port).get("synchro")
            except TransportError:
                return None  # the Inspector is still starting
            if not found or len(found["workers"]) != 2:
                return None
            fresh = all(report["at"] > moment for report in found["workers"].values())
            return found if fresh else None

        def increments(found: Any) -> int:
            calls: int = found["total"]["operations"].get("increment", {}).get("calls", 0)
            return calls

        started = time.time()
        before = wait_for(lambda: reports_since(started), timeout=60, what="reports")
        assert values_of(server.hammer("/inc", 40, concurrency=8)) == list(range(1, 41))
        served = time.time()
        found = wait_for(lambda: reports_since(served), timeout=60, what="new reports")
        assert increments(found) == increments(before) + 40
        for worker, report in found["workers"].items():
            assert worker.startswith("Sanic-Server-"), worker
            assert (
                report["interface"]
                == {
                    "syncmanager": "SyncManager",
                    "aioredis": "AIORedis",
                    "memcache": "Memcache",
                }[kind]
            )
            assert report["reachable"] is True
            assert report["ping_ms"] > 0
            assert report["namespace"] == found_namespace(kind, app_name)
            stats = report["stats"]
            assert stats["errors"] == {}
            assert stats["round_trips"] >= 1
            if kind == "memcache":  # memcached cannot list keys
                assert report["keys"] is None
            else:
                assert report["keys"] >= 1  # the counter (and whatever else the app set)
        assert found["total"] == add_up(found["workers"].values())

        # The command line a user types prints the same JSON.
        printed = subprocess.run(
            [sys.executable, "-m", "sanic", "inspect", "synchro", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        shown = json.loads(printed.stdout)
        assert set(shown["synchro"]["workers"]) == set(found["workers"])


def command(port: int, *args: str) -> Any:
    """The Inspector's answer to ``synchro ARGS`` (a data command), over its HTTP API."""
    reply = request(port, "/synchro", method="POST", json_body={"args": list(args)}, timeout=30)
    reply.raise_for_status()
    return reply.json()["result"]


def test_inspect_synchro_gets_and_sets_keys_of_the_running_app(
    tmp_path: Path, app_name: str
) -> None:
    """``sanic inspect synchro set KEY JSON`` / ``get KEY``: the workers see the value at
    once; a missing key, bad JSON and a wrong command say so."""
    port = free_port()
    env = {
        "SYNCHRO_APP_NAME": app_name,
        "SANIC_INSPECTOR": "true",
        "SANIC_INSPECTOR_HOST": "127.0.0.1",
        "SANIC_INSPECTOR_PORT": str(port),
    }
    with SanicServer.cli(tmp_path, "--workers", "2", env=env) as server:
        server.wait_workers(2)
        wait_for(lambda: _answers(port), timeout=60, what="the Inspector")
        assert command(port, "set", "flag", '{"beta": true}') == {
            "key": "flag",
            "set": {"beta": True},
        }
        seen = [reply["value"] for reply in server.from_every_worker("/get/flag", 2).values()]
        assert seen == [{"beta": True}, {"beta": True}]
        server.get("/inc")
        assert command(port, "get", "counter") == {"key": "counter", "value": 1}
        assert command(port, "get", "nothing") == {"key": "nothing", "missing": True}
        assert "not JSON" in command(port, "set", "flag", "{oops")["error"]
        assert "usage" in command(port, "delete", "flag")["error"]
        assert command(port, "get", "flag")["value"] == {"beta": True}  # unchanged
        printed = subprocess.run(  # what a user types: positional arguments after the action
            [sys.executable, "-m", "sanic", "inspect", "synchro", "get", "counter",
             "--port", str(port)],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert json.loads(printed.stdout) == {"key": "counter", "value": 1}


def _answers(port: int) -> bool:
    try:
        return request(port, "/", timeout=2).status_code == 200
    except TransportError:
        return False


def test_a_report_says_when_the_backend_is_unreachable() -> None:
    import asyncio

    from sanic_synchro_ctx.report import report

    port = free_port()  # nothing listens there
    interface = Memcache("127.0.0.1", port, prefix="down", timeout=1.0)

    async def main() -> dict[str, Any]:
        try:
            return await report(interface)
        finally:
            await interface.aclose()

    answer = asyncio.run(main())
    assert answer["reachable"] is False
    assert answer["ping_ms"] is None
    assert "SynchroConnectionError" in answer["error"]
    assert answer["endpoint"] == f"memcached://127.0.0.1:{port}"
    assert answer["stats"]["operations"] == {}  # the report's own reads are not counted


def test_endpoints_never_show_a_password() -> None:
    redis = AIORedis.from_url("redis://:s3cret@127.0.0.1:6390/2", prefix="p")
    assert redis.endpoint == "redis://127.0.0.1:6390/2"
    secure = AIORedis.from_url("rediss://user:s3cret@127.0.0.1:6390/0", prefix="p")
    assert secure.endpoint == "rediss://127.0.0.1:6390/0"
    manager = SyncManager(("127.0.0.1", 5999), authkey=b"s3cret", prefix="p")
    assert manager.endpoint == "manager://127.0.0.1:5999"


async def _started(app: Any) -> Any:
    """``app`` served in this process (no Sanic worker manager) up to after_server_start."""
    server = await app.create_server(host="127.0.0.1", port=free_port(), return_asyncio_server=True)
    assert server is not None
    await server.startup()
    await server.before_start()
    await server.after_start()
    return server


async def _stopped(server: Any) -> None:
    await server.before_stop()
    server.close()
    await server.wait_closed()
    await server.after_stop()


@pytest.mark.parametrize("interval", ["soon", -1, float("inf"), True])
async def test_a_bad_report_interval_is_refused(app: Any, interval: Any) -> None:
    from sanic_synchro_ctx import InMemory, Synchro, SynchroValueError

    Synchro(app, interface=InMemory())
    app.config.SYNCHRO_REPORT_INTERVAL = interval
    server = await app.create_server(host="127.0.0.1", port=free_port(), return_asyncio_server=True)
    assert server is not None
    await server.startup()
    await server.before_start()
    with pytest.raises(SynchroValueError, match="SYNCHRO_REPORT_INTERVAL"):
        await server.after_start()
    await _stopped(server)


async def test_no_reports_without_sanics_worker_manager(app: Any) -> None:
    """A single process (no multiplexer, no Inspector): no report task runs."""
    from sanic_synchro_ctx import InMemory, Synchro

    Synchro(app, interface=InMemory())
    server = await _started(app)
    try:
        running = {task.get_name() for task in asyncio.all_tasks()}
        assert not any(name.startswith("synchro report") for name in running), running
    finally:
        await _stopped(server)
