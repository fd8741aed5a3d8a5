"""The Redis interfaces beyond the contract: server-side layout, outages, cancellation, workers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_asyncio
import valkey.asyncio as valkey_asyncio
from sanic import Sanic

from sanic_synchro_ctx import (
    AIORedis,
    AsyncioRedis,
    Synchro,
    SynchroConnectionError,
    SynchroError,
    SynchroValueError,
)
from sanic_synchro_ctx.interfaces.base import BaseSynchroInterface

from .backends import RedisServer, require

pytestmark = pytest.mark.timeout(300)

REDIS_KINDS = ["aioredis", "asyncio_redis"]


def redis_cli(port: int, *args: str) -> str:
    result = subprocess.run(
        [require("redis-cli"), "-p", str(port), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.strip()


def build(kind: str, server: RedisServer, prefix: str) -> BaseSynchroInterface:
    if kind == "aioredis":
        return AIORedis.from_url(server.url, prefix=prefix)
    return AsyncioRedis(port=server.port, prefix=prefix)


@pytest.fixture(params=REDIS_KINDS)
async def redis_ctx(
    request: pytest.FixtureRequest, redis_server: RedisServer, app_name: str
) -> AsyncIterator[Any]:
    app = Sanic(app_name)
    interface = build(request.param, redis_server, f"{app_name}:")
    Synchro(app, interface=interface)
    yield app.ctx.synchro
    await interface.aclose()


async def test_counters_are_plain_integers_shared_with_redis_cli(
    redis_ctx: Any, redis_server: RedisServer
) -> None:
    prefix = redis_ctx.interface.prefix
    assert await redis_ctx.increment("hits", 5) == 5
    assert redis_cli(redis_server.port, "GET", f"{prefix}hits") == "5"
    assert redis_cli(redis_server.port, "INCR", f"{prefix}hits") == "6"
    assert await redis_ctx.get("hits") == 6
    assert await redis_ctx.increment("hits") == 7


async def test_keys_and_clear_scan_the_namespace_and_never_flush(
    redis_ctx: Any, redis_server: RedisServer
) -> None:
    redis_cli(redis_server.port, "SET", "foreign-key", "kept")
    redis_cli(redis_server.port, "CONFIG", "RESETSTAT")
    await redis_ctx.update({f"k{i}": i for i in range(1_200)})
    assert len(await redis_ctx.keys()) == 1_200
    await redis_ctx.clear()
    assert await redis_ctx.keys() == []
    assert redis_cli(redis_server.port, "GET", "foreign-key") == "kept"
    stats = redis_cli(redis_server.port, "INFO", "commandstats")
    assert "cmdstat_scan" in stats
    for forbidden in ("cmdstat_keys:", "cmdstat_flushdb", "cmdstat_flushall"):
        assert forbidden not in stats


async def test_nothing_written_for_coordination_is_kept_without_an_expiry(
    redis_ctx: Any, redis_server: RedisServer
) -> None:
    """300 lock names taken once, semaphores and rate limits: after clear(), every key left
    of the namespace expires within a minute (fencing tokens were one key per lock name,
    kept for ever)."""
    for i in range(300):
        async with redis_ctx.lock(f"job-{i}", ttl=5):
            pass
    async with redis_ctx.semaphore("pool", 2, ttl=5):
        await redis_ctx.rate_limit("client", limit=5, per=10)
    await redis_ctx.set("data", 1)
    await redis_ctx.clear()
    raw = redis_asyncio.Redis(port=redis_server.port)
    try:
        prefix = redis_ctx.interface.prefix.encode()
        left = [key async for key in raw.scan_iter(count=1_000) if prefix in key]
        lives = [await raw.pttl(key) for key in left]
    finally:
        await raw.aclose()
    assert len(left) == 301  # each name's last token, for a minute, and the rate's TAT
    assert all(0 < life <= 60_000 for life in lives), sorted(set(lives))[:5]


async def test_a_raw_key_equal_to_the_namespace_head_is_not_listed(
    redis_ctx: Any, redis_server: RedisServer
) -> None:
    redis_cli(redis_server.port, "SET", redis_ctx.interface.prefix, "written by someone else")
    await redis_ctx.set("mine", 1)
    assert await redis_ctx.keys() == ["mine"]


async def test_scripts_flushed_from_redis_are_loaded_again(
    redis_ctx: Any, redis_server: RedisServer
) -> None:
    await redis_ctx.set("k", 1)
    assert await redis_ctx.compare_and_set("k", 1, 2)
    redis_cli(redis_server.port, "SCRIPT", "FLUSH")
    assert await redis_ctx.compare_and_set("k", 2, 3)
    assert await redis_ctx.get("k") == 3


async def test_a_script_that_fails_in_redis_is_not_sent_again(
    redis_ctx: Any, redis_server: RedisServer
) -> None:
    """A key of another type makes the script fail inside Redis: the error is reported
    once (each EVALSHA counted by Redis), never retried."""
    name = redis_ctx.interface.prefix + "listed"
    redis_cli(redis_server.port, "RPUSH", name, "x")
    await redis_ctx.set("k", 1)
    assert await redis_ctx.compare_and_set("k", 1, 2)  # the script is loaded
    redis_cli(redis_server.port, "CONFIG", "RESETSTAT")
    with pytest.raises(SynchroError):
        await redis_ctx.compare_and_set("listed", "x", "y")
    stats = redis_cli(redis_server.port, "INFO", "commandstats")
    evalsha = next(line for line in stats.splitlines() if line.startswith("cmdstat_evalsha:"))
    assert evalsha.startswith("cmdstat_evalsha:calls=1,"), evalsha


def _calls(port: int, command: str) -> int:
    """How often Redis ran ``command`` since the last CONFIG RESETSTAT."""
    for line in redis_cli(port, "INFO", "commandstats").splitlines():
        if line.startswith(f"cmdstat_{command}:calls="):
            return int(line.split("=")[1].split(",")[0])
    return 0


async def test_set_default_of_one_key_is_one_native_set(
    redis_server: RedisServer, app_name: str
) -> None:
    """AIORedis: SET ... NX GET (Redis >= 7.0) for one key, the script for several; the
    same answers either way, and a key of another type refused without being touched."""
    interface = AIORedis.from_url(redis_server.url, prefix=f"{app_name}:")
    app = Sanic(app_name)
    Synchro(app, interface=interface)
    ctx = app.ctx.synchro
    redis_cli(redis_server.port, "CONFIG", "RESETSTAT")
    assert await ctx.setdefault("one", {"a": 1}, ttl=60) == {"a": 1}
    assert await ctx.set_default({"one": "other"}) == {"one": {"a": 1}}
    assert 0 < await ctx.ttl("one") <= 60
    assert (_calls(redis_server.port, "set"), _calls(redis_server.port, "evalsha")) == (2, 0)
    assert await ctx.set_default({"one": 2, "two": 3}) == {"one": {"a": 1}, "two": 3}
    assert _calls(redis_server.port, "evalsha") == 1
    listed = interface.prefix + "listed"
    redis_cli(redis_server.port, "RPUSH", listed, "x")
    with pytest.raises(SynchroError):
        await ctx.setdefault("listed", 1)
    assert redis_cli(redis_server.port, "LRANGE", listed, "0", "-1") == "x"
    # a refusal of another kind does not turn the native SET off
    redis_cli(redis_server.port, "CONFIG", "RESETSTAT")
    assert await ctx.setdefault("three", [3]) == [3]
    assert await ctx.setdefault("three", 4) == [3]
    assert (_calls(redis_server.port, "set"), _calls(redis_server.port, "evalsha")) == (2, 0)
    await interface.aclose()


async def test_a_syntax_error_is_told_from_other_refusals(redis_server: RedisServer) -> None:
    """What Redis 6.2 answers to SET ... NX GET ("ERR syntax error", nothing run), as a
    real server words it, against a refusal of a command that was run."""
    from sanic_synchro_ctx.interfaces.redis.aioredis import refused_as_syntax

    client = redis_asyncio.Redis.from_url(redis_server.url)
    try:
        with pytest.raises(redis_asyncio.ResponseError) as syntax:
            await client.execute_command("SET", "syntax-probe", "v", "NX", "XX")
        await client.rpush("syntax-listed", "x")
        with pytest.raises(redis_asyncio.ResponseError) as wrong_type:
            await client.set("syntax-listed", "v", nx=True, get=True)
    finally:
        await client.aclose()
    assert refused_as_syntax(syntax.value)
    assert not refused_as_syntax(wrong_type.value)


async def test_the_two_redis_interfaces_read_each_others_keys(
    redis_server: RedisServer, app_name: str
) -> None:
    first = AIORedis.from_url(redis_server.url, prefix=f"{app_name}:")
    second = AsyncioRedis(port=redis_server.port, prefix=f"{app_name}:")
    try:
        await first.set("doc", {"a": [1, 2]}, ttl=100)
        assert await second.get("doc") == {"a": [1, 2]}
        assert await second.increment("n", 3) == 3
        assert await first.decrement("n") == 2
    finally:
        await first.aclose()
        await second.aclose()


def test_aioredis_takes_only_redis_asyncio_clients() -> None:
    with pytest.raises(SynchroValueError, match="from_url"):
        AIORedis("redis://127.0.0.1")  # type: ignore[arg-type]


async def test_aioredis_accepts_a_client_that_decodes_responses(
    redis_server: RedisServer, app_name: str
) -> None:
    client = redis_asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    interface = AIORedis(client, prefix=f"{app_name}:")
    try:
        await interface.set("k", {"text": "ünï"})
        assert await interface.get("k") == {"text": "ünï"}
        assert await interface.setdefault("k", 0) == {"text": "ünï"}
    finally:
        await interface.aclose()
        await client.aclose()


async def test_a_valkey_client_is_taken_as_it_is(redis_server: RedisServer, app_name: str) -> None:
    """valkey-py, redis-py's fork, on the same server: an app's own subclass of its client is
    recognised (the whole contract suite runs on valkey-py too: the registry's
    aioredis-valkey; test_faults shows its retries are off, as with redis-py)."""

    class AppValkey(valkey_asyncio.Valkey):  # an app's own subclass is recognised too
        pass

    template = AppValkey.from_url(redis_server.url)
    interface = AIORedis(template, prefix=f"{app_name}:")
    try:
        assert repr(interface) == "AIORedis(AppValkey)"
        assert interface.client is template
        assert await interface.increment("n") == 1
        assert redis_cli(redis_server.port, "GET", interface.prefix + "n") == "1"
    finally:
        await interface.aclose()
        await template.aclose()


@pytest.mark.parametrize(
    ("name", "module", "extra"),
    [("AIORedis", "redis", "redis"), ("AsyncioRedis", "asyncio_redis", "asyncio-redis")],
)
def test_a_missing_client_names_the_extra(name: str, module: str, extra: str) -> None:
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "import sanic_synchro_ctx as s\n"
        f"try:\n    s.{name}() if {name!r} == 'AsyncioRedis' else s.{name}(None)\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert f'pip install "sanic-synchro-ctx[{extra}]"' in result.stdout, result.stderr


def test_a_missing_client_is_reported_by_the_sanic_cli(tmp_path: Path) -> None:
    """Sanic's CLI reads ImportError.name: ours is a ModuleNotFoundError naming the module,
    so the CLI shows our install hint (it failed with a TypeError on name=None)."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['redis'] = None\n")
    (tmp_path / "needs_redis.py").write_text(
        "from sanic import Sanic\n"
        "from sanic.response import text\n"
        "from sanic_synchro_ctx import AIORedis, Synchro\n"
        "app = Sanic('needs_redis')\n"
        "Synchro(app, interface=AIORedis.from_url('redis://127.0.0.1:1/0'))\n"
        "@app.get('/')\n"
        "async def index(request):\n"
        "    return text('ok')\n"
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "sanic", "needs_redis:app", "--port", "1", "--no-motd"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "AIORedis needs redis-py" in output, output  # (the CLI wraps long lines)
    assert '"sanic-synchro-ctx[redis]"' in output, output
    assert "TypeError" not in output, output


@pytest.mark.parametrize("kind", REDIS_KINDS)
async def test_redis_killed_mid_run_then_back(kind: str, tmp_path: Path, app_name: str) -> None:
    server = RedisServer(tmp_path).start()
    interface = build(kind, server, f"{app_name}:")
    try:
        assert await interface.increment("n") == 1
        assert interface.run_blocking(interface.increment("n")) == 2
        server.kill()
        for call in (
            lambda: interface.increment("n"),
            lambda: asyncio.to_thread(interface.run_blocking, interface.get("n")),
        ):
            started = time.monotonic()
            with pytest.raises(SynchroConnectionError):
                await call()
            assert time.monotonic() - started < 10  # within the socket timeout, no hang
        server.start()  # same port, empty again (no persistence)

        async def recovered() -> bool:
            try:
                await interface.set("back", True)
            except SynchroConnectionError:
                return False
            return True

        deadline = time.monotonic() + 30
        while not await recovered():
            assert time.monotonic() < deadline, "no recovery within 30 s"
            await asyncio.sleep(0.1)
        assert await interface.increment("n") == 1
        assert interface.run_blocking(interface.get("back")) is True
    finally:
        await interface.aclose()
        server.stop()


@pytest.mark.parametrize("cluster", [False, True], ids=["redis", "cluster"])
async def test_a_burst_beyond_the_pool_waits_instead_of_failing(
    cluster: bool, request: pytest.FixtureRequest, app_name: str
) -> None:
    # redis-py's default pools refuse a command when all connections are busy
    if cluster:
        url = request.getfixturevalue("redis_cluster").url
        client: Any = redis_asyncio.RedisCluster.from_url(url, max_connections=4)
    else:
        url = request.getfixturevalue("redis_server").url
        client = redis_asyncio.Redis.from_url(url, max_connections=4)
    interface = AIORedis(client, prefix=f"{app_name}:")
    try:
        results = await asyncio.gather(*(interface.increment("n") for _ in range(300)))
        assert sorted(results) == list(range(1, 301))
    finally:
        await interface.aclose()
        await client.aclose()
