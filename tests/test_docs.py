"""The docs cannot drift: their code is the examples', and every example runs for real."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .backends import MemcachedServer, RedisServer
from .servers import REPO, SanicServer, free_port, values_of

pytestmark = pytest.mark.timeout(300)

EXAMPLES = {path.name: path.read_text() for path in (REPO / "examples").glob("*.py")}
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str]]:
    found = []
    for document in DOCUMENTS:
        for block in BLOCK.findall(document.read_text()):
            found.append((f"{document.relative_to(REPO)}:{block.splitlines()[0][:40]}", block))
    return found


def in_order(lines: list[str], text: str) -> bool:
    """Every line of ``lines`` occurs in ``text``, in the same order."""
    position = 0
    for line in lines:
        position = text.find(line, position)
        if position < 0:
            return False
        position += len(line)
    return True


@pytest.mark.parametrize(("where", "block"), blocks(), ids=[where for where, _ in blocks()])
def test_every_python_block_of_the_docs_is_in_an_example(where: str, block: str) -> None:
    lines = [line for line in block.splitlines() if line.strip()]
    assert any(in_order(lines, source) for source in EXAMPLES.values()), where


def test_every_literalinclude_names_an_example() -> None:
    for document in DOCUMENTS:
        for target in re.findall(r"```\{literalinclude\} (\S+)", document.read_text()):
            assert (document.parent / target).resolve().is_file(), (document, target)


class Example(SanicServer):
    """An example app under `sanic --workers 2`, stopped even inside Sanic's ack window."""

    def __enter__(self) -> Example:
        return self  # started by example(), with its own readiness path

    def __exit__(self, *exc_info: object) -> None:
        self.stop(second_interrupt_after=10)


def example(log_dir: Path, module: str, env: dict[str, str], ready: str) -> Example:
    args = ["-m", "sanic", f"examples.{module}:app", "--host", "127.0.0.1", "--port", "{port}"]
    args += ["--no-access-logs", "--no-motd", "--workers", "2"]
    server = Example(args, log_dir, env=env)
    server.start(ready=ready)
    return server


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
        httpx.post(server.base_url + "/flags/new_checkout/on").raise_for_status()
        assert {server.get_fresh("/checkout") for _ in range(10)} == {'{"flow":"new"}'}


def test_rate_limit_example(tmp_path: Path) -> None:
    with example(tmp_path, "rate_limit", {}, "/reset") as server:
        statuses = [
            httpx.get(server.base_url + "/", headers={"x-client": "ada"}).status_code
            for _ in range(8)
        ]
        assert statuses == [200] * 5 + [429] * 3  # shared by both workers
        assert httpx.get(server.base_url + "/", headers={"x-client": "bob"}).status_code == 200


def test_locks_example(tmp_path: Path) -> None:
    with example(tmp_path, "locks", {}, "/nightly") as server:
        first = httpx.post(server.base_url + "/nightly").json()
        second = httpx.post(server.base_url + "/nightly-sync").json()
        assert first["ran"]
        assert second["ran"]
        assert second["runs"] == first["runs"] + 1


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


def test_testing_example() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples/testing.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_free_port_helper_is_loopback() -> None:
    assert 0 < free_port() < 65_536
