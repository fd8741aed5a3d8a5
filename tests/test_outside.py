"""The shared state from outside the app: connect() and the command line, from processes of
their own, against a real ``sanic --workers 2`` app (the embedded manager, Redis, LMDB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sanic_synchro_ctx import (
    SynchroConnectionError,
    SynchroContext,
    SynchroValueError,
    SyncManager,
    connect,
)

from .servers import SanicServer

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parent.parent


def cli(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m sanic_synchro_ctx ARGS`` in a process of its own (as ``user``)."""
    command = [sys.executable, "-m", "sanic_synchro_ctx", *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    environment.pop("SANIC_SYNCHRO_URL", None)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=environment)


READ_COUNTER = """
import sys
from sanic_synchro_ctx import connect
with connect(sys.argv[1], app=sys.argv[2]).sync as ctx:
    print(ctx.get("counter"))
"""


def read_counter_elsewhere(url: str, app: str) -> int:
    """The app's counter, read with connect(..., app=...) by a script in another process."""
    result = subprocess.run(
        [sys.executable, "-c", READ_COUNTER, url, app],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def backend(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, app: str
) -> tuple[dict[str, str], str]:
    """The app's environment for ``kind`` (named ``app``: each test's app is published
    under a name of its own), and the URL outside processes use."""
    named = {"SYNCHRO_APP_NAME": app}
    if kind == "syncmanager":
        return named, "manager://"
    if kind == "aioredis":
        url = request.getfixturevalue("redis_server").url
        return {**named, "SYNCHRO_INTERFACE": "aioredis", "SYNCHRO_REDIS_URL": url}, url
    path = tmp_path / "store"
    return {**named, "SYNCHRO_INTERFACE": "lmdb", "SYNCHRO_LMDB_PATH": str(path)}, f"lmdb://{path}"


@pytest.mark.parametrize("kind", ["syncmanager", "aioredis", "lmdb"])
def test_a_script_and_the_command_line_reach_a_running_app(
    request: pytest.FixtureRequest, tmp_path: Path, app_name: str, kind: str
) -> None:
    """The command line sets a flag that the app's handlers see at once; a script reads the
    counter the handlers count, with connect(url, app=...)."""
    env, url = backend(kind, request, tmp_path, app_name)
    server = SanicServer.cli(tmp_path, "--workers", "2", env=env)
    with server:
        server.wait_workers(2)
        where = ["--url", url, "--app", app_name]
        assert cli("clear", "--yes", *where).returncode == 0  # a Redis shared with others
        done = cli("set", "flag", '{"beta": true}', *where)
        assert done.returncode == 0, done.stderr
        seen = [reply["value"] for reply in server.from_every_worker("/get/flag", 2).values()]
        assert seen == [{"beta": True}, {"beta": True}]  # both workers, at once
        for _ in range(5):
            server.get("/inc")
        assert read_counter_elsewhere(url, app_name) == 5
        shown = cli("get", "counter", *where)
        assert (shown.returncode, shown.stdout) == (0, "5\n"), shown.stderr
        assert cli("increment", "counter", "10", *where).stdout == "15\n"
        assert server.get("/count").text == "15"
        keys = cli("keys", *where).stdout.splitlines()
        assert {'"counter"', '"flag"'} <= set(keys)
    if kind == "syncmanager":  # the app stopped: what it published is gone
        gone = cli("get", "counter", "--app", app_name)
        assert gone.returncode == 3
        assert f"no running app {app_name!r}" in gone.stderr


def test_the_command_line_says_what_went_wrong_and_writes_nothing(
    tmp_path: Path, app_name: str
) -> None:
    """No running app, another user, a wrong authkey, bad JSON, a missing key, a refused
    value: a message and the exit code scripts can test; nothing written."""
    server = SanicServer.cli(tmp_path, "--workers", "2", env={"SYNCHRO_APP_NAME": app_name})
    with server:
        server.wait_workers(2)
        assert cli("set", "kept", '"before"', "--app", app_name).returncode == 0

        nobody = cli("get", "kept", "--app", "no-such-app")
        assert nobody.returncode == 3
        assert "no running app 'no-such-app'" in nobody.stderr
        other_user = cli("get", "kept", "--app", app_name, user=65534)
        assert other_user.returncode == 3, other_user.stderr
        assert f"no running app {app_name!r}" in other_user.stderr
        keyfile = tmp_path / "wrong.key"
        keyfile.write_text("not-the-key")
        keyfile.chmod(0o600)
        address = manager_address(app_name)
        wrong = cli("get", "kept", "--url", f"manager://{address}?authkey_file={keyfile}",
                    "--app", app_name)  # fmt: skip
        assert wrong.returncode == 3
        assert "authkey" in wrong.stderr.lower() or "unreachable" in wrong.stderr

        bad = cli("set", "kept", "{not json", "--app", app_name)
        assert bad.returncode == 2
        assert "not JSON" in bad.stderr
        refused = cli("increment", "kept", "--app", app_name)  # "before" is no integer
        assert refused.returncode == 2
        assert "not an integer" in refused.stderr
        missing = cli("get", "nothing-here", "--app", app_name)
        assert (missing.returncode, missing.stdout) == (1, "")
        assert cli("ttl", "nothing-here", "--app", app_name).returncode == 1
        assert cli("clear", "--app", app_name).returncode == 2  # no --yes
        usage = cli("get", "--app", app_name)
        assert usage.returncode == 2
        kept = cli("get", "kept", "--app", app_name)
        assert (kept.returncode, json.loads(kept.stdout)) == (0, "before")


def manager_address(app: str) -> str:
    """The socket the running app's manager listens on, as it published it."""
    from sanic_synchro_ctx.interfaces.syncmanager.process import runtime_directory

    return (Path(runtime_directory()) / f"{app}.synchro.address").read_text()


# -- connect() itself ----------------------------------------------------------------------------


async def test_connect_uses_the_apps_namespace_and_closes_at_the_end() -> None:
    from sanic import Sanic

    from sanic_synchro_ctx import InMemory, Synchro

    interface = InMemory()
    app = Sanic("outside_namespace")
    Synchro(app, interface=interface)
    await app.ctx.synchro.set("k", 1)
    # the app's default namespace, named by app=, on the same store
    same = InMemory(prefix="synchro/outside_namespace/synchro")
    assert same.prefix == interface.prefix
    async with connect("redis://127.0.0.1:1/0", app="outside_namespace") as ctx:
        assert isinstance(ctx, SynchroContext)
        assert ctx.interface.prefix == interface.prefix
    with connect("memory://", prefix="explicit").sync as blocking:
        blocking.set("a", 1)
        assert blocking.get("a") == 1


def test_connect_refuses_what_it_cannot_use() -> None:
    with pytest.raises(SynchroValueError, match="name the namespace"):
        connect("memory://")
    with pytest.raises(SynchroValueError, match="not both"):
        connect("memory://", app="a", prefix="b")
    with pytest.raises(SynchroValueError, match="give app="):
        connect("manager://")
    with pytest.raises(SynchroConnectionError, match="no running app 'absent'"):
        connect("manager://", app="absent")
    with pytest.raises(SynchroValueError, match="store of this process alone"):
        connect(SyncManager(), app="a")  # would be a private store, not the app's
    with pytest.raises(SynchroValueError, match="store of this process alone"):
        connect("lmdb://", app="a")
    not_a_target: Any = 42
    with pytest.raises(TypeError, match="a URL or an interface"):
        connect(not_a_target, app="a")
