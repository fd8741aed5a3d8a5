"""The docs cannot drift: their code is the examples', and every example runs for real."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from .backends import MemcachedServer, RedisServer
from .servers import REPO, SanicServer, free_port, values_of, wait_for

pytestmark = pytest.mark.timeout(300)

DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(python|\{literalinclude\} (\S+))\n(.*?)^```", re.S | re.M)
APP = re.compile(r"^app = Sanic\(", re.M)
ROUTE = re.compile(r"""^@app\.(?:get|route)\("(/[^"<]*)"\)""", re.M)


def _lines(text: str, spec: str) -> str:
    """Sphinx's ``:lines:`` option (``9-30``, ``6-``, ``1,3``) applied to ``text``."""
    lines = text.splitlines(keepends=True)
    chosen: list[str] = []
    for part in spec.split(","):
        start, _, end = part.partition("-")
        first = int(start) if start else 1
        last = (int(end) if end else len(lines)) if "-" in part else first
        chosen += lines[first - 1 : last]
    return "".join(chosen)


def rendered_blocks() -> list[tuple[str, str]]:
    """Every Python code block of the README and the docs, as the reader sees it: fenced
    blocks as written, literalincludes as included (line ranges applied)."""
    found = []
    for document in DOCUMENTS:
        text = document.read_text()
        for match in FENCE.finditer(text):
            where = f"{document.relative_to(REPO)}:{text.count(chr(10), 0, match.start()) + 1}"
            body = match.group(3)
            if match.group(1) == "python":
                found.append((where, body))
                continue
            options = dict(re.findall(r"^:(\w[\w-]*):\s*(.*)$", body, re.M))
            included = (document.parent / match.group(2)).resolve().read_text()
            if "lines" in options:
                included = _lines(included, options["lines"])
            found.append((where, included))
    return found


BLOCKS = rendered_blocks()


def test_the_docs_have_code_to_check() -> None:
    assert len(BLOCKS) >= 15
    assert sum(bool(APP.search(code)) for _, code in BLOCKS) >= 8


@pytest.mark.parametrize(("where", "code"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_every_code_block_compiles_as_shown(where: str, code: str) -> None:
    compile(code, where, "exec")


@pytest.fixture(scope="module")
def standalone_manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A manager for the samples that connect to one (python -m sanic_synchro_ctx serve)."""
    directory = tmp_path_factory.mktemp("manager")
    socket_path, key_path = str(directory / "m.sock"), str(directory / "m.key")
    manager = subprocess.Popen(
        [sys.executable, "-m", "sanic_synchro_ctx", "serve", "--socket", socket_path,
         "--authkey-file", key_path, "--watch-pid", str(os.getpid())],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    assert manager.stdout is not None
    assert b"serving on" in manager.stdout.readline()
    yield {"SYNCHRO_SOCKET": socket_path, "SYNCHRO_AUTHKEY_FILE": key_path}
    manager.terminate()
    manager.wait(10)


APPS = [(where, code) for where, code in BLOCKS if APP.search(code)]


@pytest.mark.parametrize(("where", "code"), APPS, ids=[where for where, _ in APPS])
def test_every_app_sample_runs_as_shown_and_serves_a_request(
    where: str,
    code: str,
    tmp_path: Path,
    redis_server: RedisServer,
    memcached_server: MemcachedServer,
    standalone_manager: dict[str, str],
) -> None:
    """The sample exactly as the page shows it, saved as a module and started with the
    Sanic CLI (one process), answers a request without a server error."""
    # the 0.1.0 sample names Redis by a fixed URL: point it at the test's own server
    (tmp_path / "sample.py").write_text(code.replace("redis://localhost", redis_server.url))
    env = {
        "PYTHONPATH": str(REPO),
        "REDIS_URL": redis_server.url,
        "REDIS_PORT": str(redis_server.port),
        "MEMCACHED_PORT": str(memcached_server.port),
        **standalone_manager,
    }
    routes = ROUTE.findall(code) or ["/"]
    args = ["-m", "sanic", "sample:app", "--host", "127.0.0.1", "--port", "{port}"]
    server = SanicServer([*args, "--single-process", "--no-motd"], tmp_path, env=env, cwd=tmp_path)
    server.start(ready=routes[0])
    try:
        response = server.request(routes[0])
        assert response.status_code < 500, (where, response.status_code, server.log())
        assert server.library_tracebacks() == [], server.log()
    finally:
        server.stop()


def test_every_literalinclude_names_an_example() -> None:
    for document in DOCUMENTS:
        for target in re.findall(r"```\{literalinclude\} (\S+)", document.read_text()):
            assert (document.parent / target).resolve().is_file(), (document, target)


@contextlib.contextmanager
def example(log_dir: Path, module: str, env: dict[str, str], ready: str) -> Iterator[SanicServer]:
    """An example app under `sanic --workers 2`, stopped once Sanic's main process can take
    a SIGINT."""
    server = SanicServer.wrapping(f"examples.{module}:app", log_dir, "--workers", "2", env=env)
    server.start(ready=ready)
    try:
        server.wait_main_monitoring()
        yield server
    finally:
        server.stop()


def test_factory_example(tmp_path: Path) -> None:
    with example(tmp_path, "factory", {}, "/visit/warmup") as server:
        counts = [server.get_fresh("/visit/home") for _ in range(20)]
        assert [int(re.search(r'"visits":(\d+)', c).group(1)) for c in counts] == list(range(1, 21))


def test_redis_counter_example(tmp_path: Path, redis_server: RedisServer) -> None:
    env = {"REDIS_URL": redis_server.url}
    with example(tmp_path, "redis_counter", env, "/count") as server:
        start = int(server.get("/count").text)
        bodies = server.hammer("/inc", 300, concurrency=30)
        assert sorted(int(b) for b in bodies) == list(range(start + 1, start + 301))


def test_asyncio_redis_counter_example(tmp_path: Path, redis_server: RedisServer) -> None:
    env = {"REDIS_PORT": str(redis_server.port)}
    with example(tmp_path, "asyncio_redis_counter", env, "/inc") as server:
        values = sorted(int(b) for b in server.hammer("/inc", 200, concurrency=20))
        assert values == list(range(values[0], values[0] + 200))


def test_memcache_flags_example(tmp_path: Path, memcached_server: MemcachedServer) -> None:
    env = {"MEMCACHED_PORT": str(memcached_server.port)}
    with example(tmp_path, "memcache_flags", env, "/checkout") as server:
        assert server.get_fresh("/checkout") == '{"flow":"classic"}'
        server.request("/flags/new_checkout/on", method="POST").raise_for_status()
        assert {server.get_fresh("/checkout") for _ in range(10)} == {'{"flow":"new"}'}


def test_rate_limit_example(tmp_path: Path) -> None:
    with example(tmp_path, "rate_limit", {}, "/quota") as server:
        answers = [server.request("/", headers={"x-client": "ada"}) for _ in range(8)]
        assert [a.status_code for a in answers] == [200] * 5 + [429] * 3  # both workers
        assert [a.headers["RateLimit-Remaining"] for a in answers[:5]] == ["4", "3", "2", "1", "0"]
        assert 1 <= int(answers[5].headers["Retry-After"]) <= 12  # one request per 12 s
        assert server.request("/", headers={"x-client": "bob"}).status_code == 200
        exports = [
            server.request("/export", headers={"x-client": "ada"}).status_code for _ in range(3)
        ]
        assert exports == [200, 200, 429]


def test_leader_task_example(tmp_path: Path) -> None:
    with example(tmp_path, "leader_task", {}, "/sweeps") as server:
        first = wait_for(lambda: (s := server.get("/sweeps").json())["sweeps"] >= 2 and s)
        assert first["leading"] is True
        pids = {server.get_fresh("/sweeps") for _ in range(10)}
        assert len({json.loads(p)["leader"] for p in pids}) == 1  # every worker names one


def test_notifications_example(tmp_path: Path) -> None:
    with example(tmp_path, "notifications", {}, "/price/tea") as server:

        def prices() -> list[dict[str, object]]:
            return [json.loads(server.get_fresh("/price/tea")) for _ in range(20)]

        # both workers answer from their own cache once they read it
        wait_for(lambda: len({p["pid"] for p in prices() if p["cached"]}) == 2)
        told = server.request("/price/tea/300", method="POST").json()
        assert told["workers_told"] == 2
        # every worker dropped its copy (without the message, its cache would answer 250
        # for ever): soon no answer is the old price any more
        wait_for(lambda: {p["cents"] for p in prices()} == {300})


def test_locks_example(tmp_path: Path) -> None:
    with example(tmp_path, "locks", {}, "/downloads") as server:
        first = server.request("/nightly", method="POST").json()
        second = server.request("/nightly-sync", method="POST").json()
        assert first["ran"]
        assert second["ran"]
        assert second["runs"] == first["runs"] + 1
        reports = [server.request("/report", method="POST").json() for _ in range(3)]
        assert [r["written"] for r in reports] == [True] * 3
        tokens = [r["token"] for r in reports]
        assert tokens == sorted(set(tokens))
        assert server.hammer("/downloads", 12, concurrency=6) == ['{"done":true}'] * 12


def test_pipelines_example(tmp_path: Path) -> None:
    with example(tmp_path, "pipelines", {}, "/report") as server:
        first = server.request("/visit/home", method="POST").json()
        assert first == {"page": 1, "total": 1, "first": "home"}
        for page in ["docs", "home", "docs", "docs"]:
            server.request(f"/visit/{page}", method="POST").raise_for_status()
        report = json.loads(server.get_fresh("/report"))
        assert report == {"views:docs": 3, "views:home": 2, "views:total": 5}


def test_standalone_manager_example(tmp_path: Path) -> None:
    socket_path, key_path = str(tmp_path / "m.sock"), str(tmp_path / "m.key")
    command = [sys.executable, "-m", "sanic_synchro_ctx", "serve", "--socket", socket_path]
    manager = subprocess.Popen(
        [*command, "--authkey-file", key_path], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert manager.stdout is not None
        assert b"serving on" in manager.stdout.readline()
        env = {"SYNCHRO_SOCKET": socket_path, "SYNCHRO_AUTHKEY_FILE": key_path}
        with example(tmp_path, "standalone_manager", env, "/inc") as server:
            values = values_of([f"{b} x" for b in server.hammer("/inc", 200, concurrency=20)])
            assert values == list(range(values[0], values[0] + 200))
    finally:
        manager.terminate()
        manager.wait(10)


@pytest.mark.parametrize("backend", ["default", "redis"])
def test_testing_example(backend: str, request: pytest.FixtureRequest) -> None:
    """examples/testing.py, on memory:// and, through the plugin's --synchro-url, on a real
    Redis that keeps nothing of the test's namespace afterwards."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0"]
    command.append("examples/testing.py")
    increments_before = 0
    if backend == "redis":
        server = request.getfixturevalue("redis_server")
        command += ["--synchro-url", server.url]
        increments_before = _incrby_calls(server.port)
    result = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    if backend == "redis":
        assert _incrby_calls(server.port) >= increments_before + 3  # it ran on Redis
        client = redis.Redis(port=server.port)
        try:
            assert list(client.scan_iter(match="pytest/*")) == []  # and left nothing
        finally:
            client.close()


def _incrby_calls(port: int) -> int:
    client = redis.Redis(port=port)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return int(stats.get("cmdstat_incrby", {}).get("calls", 0))


def test_the_servers_tests_start_listen_on_loopback_only(tmp_path: Path) -> None:
    """Load goes to loopback only: the harness's ports are free on 127.0.0.1 and every
    server it builds is told to listen there, and is asked there."""
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # free on loopback
    server = SanicServer.cli(tmp_path)
    assert server.args[server.args.index("--host") + 1] == "127.0.0.1"
    assert server.env["HOST"] == "127.0.0.1"
    assert server.base_url == f"http://127.0.0.1:{server.port}"
