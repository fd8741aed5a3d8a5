"""Memcache over several memcached servers: where keys go, and a server that goes away.

The contract suite runs on three servers too (registry entry ``memcache-3``)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sanic_synchro_ctx import Memcache, SynchroConnectionError, SynchroValueError
from sanic_synchro_ctx.interfaces.memcache.rendezvous import Rendezvous, check_servers
from sanic_synchro_ctx.interfaces.memcache.sharded import ShardedMemcache

from .backends import MemcachedServer

pytestmark = pytest.mark.timeout(120)


def spread(servers: list[tuple[str, int]], count: int) -> Counter[str]:
    interface = Memcache(servers=servers, prefix="spread")
    return Counter(interface.server_of(f"user:{i}") for i in range(count))


def test_several_servers_make_a_sharded_memcache_one_server_a_plain_one() -> None:
    three = Memcache(servers=[("127.0.0.1", 1), ("127.0.0.1", 2), ("127.0.0.1", 3)])
    assert isinstance(three, ShardedMemcache)
    assert isinstance(three, Memcache)
    assert repr(three) == "Memcache(127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3)"
    one = Memcache(servers=[("10.0.0.1", 11311)])
    assert type(one) is Memcache
    assert one.endpoint == "memcached://10.0.0.1:11311"


def test_ten_thousand_keys_spread_evenly_over_three_servers() -> None:
    servers = [("10.0.0.1", 11211), ("10.0.0.2", 11211), ("10.0.0.3", 11211)]
    counts = spread(servers, 10_000)
    assert len(counts) == 3
    even = 10_000 / 3
    for count in counts.values():
        assert abs(count - even) <= 0.15 * even, counts


def test_adding_a_server_moves_about_a_quarter_of_the_keys_all_to_it() -> None:
    three = [("10.0.0.1", 11211), ("10.0.0.2", 11211), ("10.0.0.3", 11211)]
    four = [*three, ("10.0.0.4", 11211)]
    before = Memcache(servers=three, prefix="grow")
    after = Memcache(servers=four, prefix="grow")
    keys = [f"k{i}" for i in range(10_000)]
    moved = [key for key in keys if before.server_of(key) != after.server_of(key)]
    assert {after.server_of(key) for key in moved} == {"10.0.0.4:11211"}
    assert 0.20 * len(keys) <= len(moved) <= 0.30 * len(keys), len(moved)


def test_weights_scale_a_servers_share() -> None:
    counts = spread([("10.0.0.1", 11211, 2.0), ("10.0.0.2", 11211), ("10.0.0.3", 11211)], 10_000)
    assert 0.45 <= counts["10.0.0.1:11211"] / 10_000 <= 0.55, counts


def test_every_process_picks_the_same_server() -> None:
    """The pick depends on the key and the servers only (no per-process hash seed)."""
    import subprocess
    import sys

    code = (
        "from sanic_synchro_ctx.interfaces.memcache.rendezvous import Rendezvous;"
        "r = Rendezvous([('a', 1, 1.0), ('b', 2, 1.0), ('c', 3, 1.0)]);"
        "print([r.pick(f'key{i}') for i in range(50)])"
    )
    ring = Rendezvous([("a", 1, 1.0), ("b", 2, 1.0), ("c", 3, 1.0)])
    mine = str([ring.pick(f"key{i}") for i in range(50)])
    for seed in ("1", "2"):
        other = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        )
        assert other.stdout.strip() == mine


@pytest.mark.parametrize(
    ("servers", "named"),
    [
        ([], "at least one"),
        ("127.0.0.1:11211", "list of"),
        ([("127.0.0.1", 1), ("127.0.0.1", 1)], "named twice"),
        ([("127.0.0.1", 0)], "port"),
        ([("127.0.0.1", 70_000)], "port"),
        ([("127.0.0.1", "11211")], "port"),
        ([("127.0.0.1", True)], "port"),
        ([("", 11211)], "host"),
        ([("a,b", 11211)], "host"),
        ([("127.0.0.1", 1, 0)], "weight"),
        ([("127.0.0.1", 1, -2.0)], "weight"),
        ([("127.0.0.1", 1, float("nan"))], "weight"),
        ([("127.0.0.1", 1, "heavy")], "weight"),
        ([("127.0.0.1",)], "host, port"),
        ([("127.0.0.1", 1, 1.0, 4)], "host, port"),
    ],
)
def test_bad_server_lists_are_refused(servers: Any, named: str) -> None:
    with pytest.raises(SynchroValueError, match=named):
        check_servers(servers)
    with pytest.raises(SynchroValueError, match=named):
        Memcache(servers=servers)


def test_host_and_servers_together_are_refused() -> None:
    with pytest.raises(SynchroValueError, match="not both"):
        Memcache("10.0.0.9", servers=[("127.0.0.1", 1), ("127.0.0.1", 2)])
    with pytest.raises(SynchroValueError, match="not both"):
        Memcache("10.0.0.9", servers=[("127.0.0.1", 1)])


@pytest.fixture
async def own_servers() -> AsyncIterator[list[MemcachedServer]]:
    """Three servers of this test alone (it kills one)."""
    servers = [MemcachedServer().start() for _ in range(3)]
    yield servers
    for server in servers:
        server.stop()


async def test_a_dead_server_fails_its_keys_only_and_serves_again_when_back(
    own_servers: list[MemcachedServer],
) -> None:
    interface = Memcache(
        servers=[("127.0.0.1", server.port) for server in own_servers], prefix="dead", timeout=2
    )
    try:
        assert await interface.ping() > 0
        keys = [f"k{i}" for i in range(60)]
        for key in keys:
            await interface.set(key, key)
        victim = own_servers[1]
        victim.kill()
        place = f"127.0.0.1:{victim.port}"
        lost = [key for key in keys if interface.server_of(key) == place]
        kept = [key for key in keys if interface.server_of(key) != place]
        assert lost
        assert kept
        for key in kept:  # the others serve as before
            assert await interface.get(key) == key
            assert await interface.replace(key, key.upper()) == key
            if interface.server_of(key + "-n") != place:
                assert await interface.increment(key + "-n") == 1
        kept_values = {key: key.upper() for key in kept}
        for key in lost:
            with pytest.raises(SynchroConnectionError):
                await interface.get(key)
        with pytest.raises(SynchroConnectionError):
            await interface.ping()  # every server is read: the Inspector says unreachable
        with pytest.raises(SynchroConnectionError):
            await interface.get_many(keys)  # spans the dead server
        assert await interface.get_many(kept) == kept_values

        victim.start()  # same port, empty (memcached keeps nothing)

        async def serves() -> bool:
            try:
                await interface.set(lost[0], "back")
            except SynchroConnectionError:
                return False
            return True

        for _ in range(100):
            if await serves():
                break
            await asyncio.sleep(0.05)
        assert await interface.get(lost[0]) == "back"
        assert await interface.get(lost[1]) is None  # what the dead server held is gone
        assert await interface.get(kept[0]) == kept[0].upper()
    finally:
        await interface.aclose()


async def test_multi_key_operations_and_clear_span_every_server(
    memcached_servers: list[MemcachedServer],
) -> None:
    interface = Memcache(
        servers=[("127.0.0.1", server.port) for server in memcached_servers], prefix="span"
    )
    try:
        keys = [f"k{i}" for i in range(30)]
        assert len({interface.server_of(key) for key in keys}) == 3
        await interface.update({key: i for i, key in enumerate(keys)})
        assert await interface.get_many([*keys, "missing"]) == {k: i for i, k in enumerate(keys)}
        assert await interface.set_default({"k0": "x", "new": "y"}) == {"k0": 0, "new": "y"}
        assert await interface.delete(*keys[:10], "missing") == 10
        await interface.clear()
        assert await interface.get_many(keys) == {}
        assert await interface.get("new") is None
        sizes = interface.stats()["batch_sizes"]
        assert sizes is not None
        assert sum(sizes.values()) >= 3  # the servers' own round trips, added up
    finally:
        await interface.aclose()
