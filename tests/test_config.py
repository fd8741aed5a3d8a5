"""Interfaces from URLs and from app.config: every scheme on its real backend, bad URLs
refused with the problem named and the password masked, SANIC_SYNCHRO_URL in a real
multi-worker run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from sanic import Sanic

from sanic_synchro_ctx import (
    LMDB,
    AIORedis,
    AsyncioRedis,
    InMemory,
    Memcache,
    Synchro,
    SynchroValueError,
    SyncManager,
    interface_from_url,
)
from sanic_synchro_ctx.interfaces.base import BaseSynchroInterface

from .servers import SanicServer

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent


async def smoke(interface: BaseSynchroInterface, app_name: str) -> None:
    """A few operations of the contract through Synchro, both front ends."""
    app = Sanic(app_name)
    Synchro(app, interface=interface)
    ctx = app.ctx.synchro
    try:
        await ctx.set("k", {"a": 1})
        assert await ctx.get("k") == {"a": 1}
        assert await ctx.increment("n") == 1
        assert ctx.sync.increment("n") == 2
        assert await ctx.delete("k", "n") == 2
    finally:
        ctx.interface.close()
        await ctx.interface.aclose()


async def test_manager_url_is_the_embedded_default(app_name: str) -> None:
    made = interface_from_url("manager://?timeout=2&batching=false")
    assert isinstance(made, SyncManager)
    assert made.timeout == 2.0
    assert made.max_batch is None
    made.attach(None)  # no main process here: the store lives in this process
    await smoke(made, app_name)


async def test_manager_url_with_a_path_joins_a_running_manager(
    app_name: str, manager_process: Any, tmp_path: Path
) -> None:
    key = tmp_path / "key"
    key.write_bytes(manager_process.authkey)
    made = interface_from_url(f"manager://{manager_process.address}?authkey_file={key}")
    assert isinstance(made, SyncManager)
    assert made.address == manager_process.address
    await smoke(made, app_name)


async def test_memory_url(app_name: str) -> None:
    made = interface_from_url("memory://?prefix=mine")
    assert isinstance(made, InMemory)
    assert made.prefix is not None
    assert made.prefix.startswith("mine")
    await smoke(made, app_name)


async def test_redis_url(app_name: str, redis_server: Any) -> None:
    made = interface_from_url(redis_server.url + "?timeout=3&max_batch=16&max_connections=7")
    assert isinstance(made, AIORedis)
    assert made.max_batch == 16
    pool = made.client.connection_pool
    assert pool.max_connections == 7
    assert pool.connection_kwargs["socket_timeout"] == 3.0
    await smoke(made, app_name)


async def test_redis_cluster_url(app_name: str, redis_cluster: Any) -> None:
    url = redis_cluster.url.replace("redis://", "redis+cluster://")
    made = interface_from_url(url)
    assert isinstance(made, AIORedis)
    assert isinstance(made.client, redis.asyncio.RedisCluster)
    await smoke(made, app_name)


async def test_asyncio_redis_url(app_name: str, redis_server: Any) -> None:
    made = interface_from_url(f"asyncio-redis://127.0.0.1:{redis_server.port}/2?poolsize=2")
    assert isinstance(made, AsyncioRedis)
    assert repr(made) == f"AsyncioRedis(127.0.0.1:{redis_server.port}/2)"
    await smoke(made, app_name)
    raw = redis.Redis(port=redis_server.port, db=2)
    try:
        assert raw.dbsize() >= 0  # the database the URL named is where it wrote
    finally:
        raw.close()


async def test_memcached_url(app_name: str, memcached_server: Any) -> None:
    made = interface_from_url(f"memcached://127.0.0.1:{memcached_server.port}?pool_size=2")
    assert isinstance(made, Memcache)
    await smoke(made, app_name)


async def test_memcached_url_with_several_servers(
    app_name: str, memcached_servers: list[Any]
) -> None:
    places = ",".join(f"127.0.0.1:{server.port}" for server in memcached_servers)
    made = interface_from_url(f"memcached://{places}?timeout=2")
    assert isinstance(made, Memcache)
    assert made.endpoint == f"memcached://{places}"
    assert [port for _, port, _ in made.servers] == [s.port for s in memcached_servers]
    await smoke(made, app_name)


async def test_redis_sentinel_url(app_name: str, redis_sentinels: Any) -> None:
    made = interface_from_url(redis_sentinels.url + "?wait_replicas=1&timeout=3")
    assert isinstance(made, AIORedis)
    assert made.endpoint == redis_sentinels.url
    await smoke(made, app_name)


def test_a_sentinel_urls_password_is_never_shown() -> None:
    made = interface_from_url("redis+sentinel://:s3cret@127.0.0.1:1,127.0.0.1:2/main/1")
    assert "s3cret" not in made.endpoint
    assert "s3cret" not in repr(made)
    with pytest.raises(SynchroValueError) as caught:
        interface_from_url("redis+sentinel://:s3cret@127.0.0.1:1/main/x")
    assert "s3cret" not in str(caught.value)


async def test_lmdb_urls(app_name: str, tmp_path: Path) -> None:
    persistent = interface_from_url(f"lmdb://{tmp_path / 'db'}?durable=true")
    assert isinstance(persistent, LMDB)
    await smoke(persistent, app_name)
    assert (tmp_path / "db").exists()
    private = interface_from_url("lmdb://")
    assert isinstance(private, LMDB)
    await smoke(private, app_name + "_private")


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("", "non-empty"),
        ("postgres://db", "unknown synchro URL scheme 'postgres'"),
        ("redis://127.0.0.1:notaport/0", "cannot read synchro URL"),
        ("redis://127.0.0.1:70000/0", "cannot read synchro URL"),
        ("redis://127.0.0.1:6379/0?bogus=1", "unknown option 'bogus'"),
        ("redis://127.0.0.1:6379/0?timeout=soon", "option 'timeout'"),
        ("manager://?batching=maybe", "not a boolean"),
        ("manager://host", "takes no host"),
        ("manager://?authkey_file=/k", "authkey_file is for a running manager"),
        ("memcached://a:1,a:1", "named twice"),
        ("memcached://a:1,b:port", "server 'b:port'"),
        ("memcached://a:1,b:99999", "server 'b:99999'"),
        ("redis+sentinel://127.0.0.1:26379", "name the service"),
        ("redis+sentinel://127.0.0.1:26379/main/zero", "database must be a number"),
        ("redis+sentinel://127.0.0.1:26379,:1/main/0", "no host"),
        ("redis+sentinel://a:1,b:notaport/main/0", "sentinel 'b:notaport'"),
        ("redis+sentinel://a:1/main/0?wait_replicas=-1", "wait_replicas"),
        ("asyncio-redis://127.0.0.1:6379/zero", "database must be a number"),
    ],
)
def test_bad_urls_name_the_problem(url: str, named: str) -> None:
    with pytest.raises(SynchroValueError, match=named.replace("(", r"\(")):
        interface_from_url(url)


def test_unknown_scheme_lists_the_valid_ones() -> None:
    with pytest.raises(SynchroValueError) as caught:
        interface_from_url("mongodb://x")
    for scheme in ("manager://", "redis://", "redis+cluster://", "memcached://", "lmdb://"):
        assert scheme in str(caught.value)


def test_unknown_keyword_option_lists_the_valid_ones() -> None:
    with pytest.raises(SynchroValueError, match=r"valid options: .*max_batch.*timeout"):
        interface_from_url("manager://", poolsize=3)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cr3t-pw@127.0.0.1:6379/0?bogus=1",
        "redis://user:s3cr3t-pw@127.0.0.1:notaport/0",
        "asyncio-redis://:s3cr3t-pw@127.0.0.1:6379/zero",
        "redis+sentinel://:s3cr3t-pw@127.0.0.1:26379/main/zero",
    ],
)
def test_passwords_never_appear_in_errors(url: str) -> None:
    with pytest.raises(SynchroValueError) as caught:
        interface_from_url(url)
    assert "s3cr3t-pw" not in str(caught.value)
    assert "***" in str(caught.value)


def test_a_url_with_a_password_builds_without_showing_it(redis_server: Any) -> None:
    made = interface_from_url(f"asyncio-redis://:s3cr3t-pw@127.0.0.1:{redis_server.port}/0")
    assert "s3cr3t-pw" not in repr(made)
    assert "s3cr3t-pw" not in repr(interface_from_url("redis://:s3cr3t-pw@127.0.0.1:1/0"))


#: Hosts and paths of the schemes whose URLs carry a password (where ``{}`` is the
#: user information), and ways to get each URL wrong.
PASSWORD_URLS = [
    "redis://{}@127.0.0.1:6379/0",
    "rediss://{}@127.0.0.1:6379/0",
    "redis+cluster://{}@127.0.0.1:7000",
    "asyncio-redis://{}@127.0.0.1:6379/0",
    "redis+sentinel://{}@127.0.0.1:26379,127.0.0.1:26380/main/0",
]
MISTAKES = ["", "?bogus=1", "?timeout=soon", ":notaport", "x", "/zero"]


@pytest.mark.parametrize("template", PASSWORD_URLS)
@pytest.mark.parametrize("mark", ["/", "?", "#", "@", "%2F", ":"])
@pytest.mark.parametrize("mistake", MISTAKES)
def test_no_piece_of_a_password_appears_in_errors_or_reprs(
    template: str, mark: str, mistake: str
) -> None:
    """A password holding a URL delimiter is refused with the fix, never read in pieces (a
    piece read as a path, query or option name would be shown); one without is masked."""
    url = template.format(f"user:Alpha1{mark}Bravo2") + mistake
    try:
        made = interface_from_url(url)
    except SynchroValueError as exc:
        shown = str(exc)
        if mark in "/?#":
            assert "percent-encode" in shown
    else:
        shown = f"{made!r} {made.endpoint}"
    assert "Alpha1" not in shown
    assert "Bravo2" not in shown


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/notanumber",
        "redis://127.0.0.1:6379/1/2",
        "rediss://127.0.0.1:6379/²",
        "redis+cluster://127.0.0.1:7000/3",
        "asyncio-redis://127.0.0.1:6379/1/2",
        "redis+sentinel://127.0.0.1:26379/main/1/2",
    ],
)
def test_a_database_that_is_not_one_number_is_refused(url: str) -> None:
    with pytest.raises(SynchroValueError, match="database"):
        interface_from_url(url)


def test_aioredis_from_url_refuses_a_database_that_is_not_one_number() -> None:
    with pytest.raises(SynchroValueError, match="must be a number, not 'notanumber'"):
        AIORedis.from_url("redis://127.0.0.1:6379/notanumber")
    assert AIORedis.from_url("redis://127.0.0.1:6379/12").endpoint.endswith("/12")


def test_synchro_reads_its_url_and_prefix_from_app_config(app_name: str) -> None:
    app = Sanic(app_name)
    app.config.SYNCHRO_URL = "memory://"
    app.config.SYNCHRO_PREFIX = "shop"
    synchro = Synchro(app)
    other = Synchro(app, name="other")
    assert isinstance(app.ctx.synchro.interface, InMemory)
    assert app.ctx.synchro.interface.prefix.startswith("shop")
    assert app.ctx.other.interface.prefix.startswith("shop/other")
    assert synchro.interface is None  # taken from the config, per app
    assert other.name == "other"


def test_an_explicit_interface_wins_over_the_config(app_name: str) -> None:
    app = Sanic(app_name)
    app.config.SYNCHRO_URL = "memory://"
    chosen = SyncManager()
    Synchro(app, interface=chosen)
    assert app.ctx.synchro.interface is chosen


def test_without_config_the_default_is_the_manager(app_name: str) -> None:
    app = Sanic(app_name)
    Synchro(app)
    assert isinstance(app.ctx.synchro.interface, SyncManager)


def test_a_bad_configured_url_fails_at_set_up(app_name: str) -> None:
    app = Sanic(app_name)
    app.config.SYNCHRO_URL = "nosuch://"
    with pytest.raises(SynchroValueError, match="unknown synchro URL scheme"):
        Synchro(app)


def _counter_app(tmp_path: Path, env: dict[str, str]) -> SanicServer:
    tmp_path.mkdir()
    return SanicServer.wrapping("examples.counter:app", tmp_path, "--workers", "2", env=env)


def test_sanic_synchro_url_switches_a_running_app_to_redis(
    tmp_path: Path, redis_server: Any
) -> None:
    """The README's counter app, unchanged: with SANIC_SYNCHRO_URL=redis://... its two
    workers share the counter through Redis; without it, through the manager."""
    raw = redis.Redis(port=redis_server.port)
    env = {"SANIC_SYNCHRO_URL": redis_server.url, "SANIC_SYNCHRO_PREFIX": f"cfg{os.getpid()}"}
    try:
        server = _counter_app(tmp_path / "redis", env).start()
        try:
            server.wait_main_monitoring()
            bodies = server.hammer("/inc", 200, concurrency=20)
            assert sorted(int(body) for body in bodies) == list(range(1, 201))
            stored = list(raw.scan_iter(match=f"cfg{os.getpid()}*"))
            assert len(stored) == 1
            assert raw.get(stored[0]) == b"200"
        finally:
            server.stop()
        server = _counter_app(tmp_path / "manager", {}).start()
        try:
            server.wait_main_monitoring()
            bodies = server.hammer("/inc", 50, concurrency=10)
            assert sorted(int(body) for body in bodies) == list(range(1, 51))
            assert raw.get(stored[0]) == b"200"  # untouched: the manager holds this one
        finally:
            server.stop()
    finally:
        raw.close()


# -- schemes of other packages ------------------------------------------------------------------


def test_a_registered_scheme_builds_its_interface_with_its_options() -> None:
    from sanic_synchro_ctx import register_scheme

    calls: list[tuple[str, dict[str, Any]]] = []

    def build(url: str, *, shards: int = 1, **common: Any) -> InMemory:
        calls.append((url, {"shards": shards, **common}))
        return InMemory(**common)

    register_scheme("shardmem", build, options={"shards": int})
    made = interface_from_url("shardmem://somewhere/path?shards=3&prefix=app")
    assert isinstance(made, InMemory)
    assert calls == [("shardmem://somewhere/path", {"shards": 3, "prefix": "app"})]
    with pytest.raises(SynchroValueError, match=r"unknown option 'bogus'.*shards"):
        interface_from_url("shardmem://x?bogus=1")
    with pytest.raises(SynchroValueError, match="option 'shards'"):
        interface_from_url("shardmem://x?shards=many")
    register_scheme("shardmem", build)  # a registered scheme may be registered again


def test_schemes_that_cannot_be_registered_are_refused() -> None:
    from sanic_synchro_ctx import register_scheme

    with pytest.raises(SynchroValueError, match="built in"):
        register_scheme("redis", lambda url, **options: InMemory())
    with pytest.raises(SynchroValueError, match="not a URL scheme"):
        register_scheme("no scheme", lambda url, **options: InMemory())
    register_scheme("notaninterface", lambda url, **options: object())
    with pytest.raises(SynchroValueError, match="returned object, not an interface"):
        interface_from_url("notaninterface://")


def test_a_package_declares_a_scheme_as_an_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed package's entry point of group sanic_synchro_ctx.schemes is registered
    when its scheme is first asked for (a distribution laid out as pip installs one)."""
    (tmp_path / "entry_scheme_pkg.py").write_text(
        "from sanic_synchro_ctx import InMemory\n"
        "def build(url, **options):\n"
        "    made = InMemory(**options)\n"
        "    made.built_from = url\n"
        "    return made\n"
    )
    info = tmp_path / "entry_scheme_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: entry-scheme-pkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[sanic_synchro_ctx.schemes]\nentrymem = entry_scheme_pkg:build\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    made = interface_from_url("entrymem://here?prefix=p")
    assert isinstance(made, InMemory)
    assert made.built_from == "entrymem://here"  # type: ignore[attr-defined]
