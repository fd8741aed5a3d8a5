"""Memcache beyond the contract: the key mapping, TTLs, generations, outages, workers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote_to_bytes

import aiomcache
import pytest
from sanic import Sanic

from sanic_synchro_ctx import (
    Memcache,
    Synchro,
    SynchroConnectionError,
    SynchroError,
    SynchroTypeError,
    SynchroValueError,
)

from .backends import MemcachedServer

pytestmark = pytest.mark.timeout(300)

VALID_KEY = re.compile(rb"[\x21-\x7e]{1,250}")


def digest(key: str) -> str:
    """The documented hashed form of a key: base64url(SHA-256(key)), unpadded."""
    raw = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def tricky_keys() -> list[str]:
    keys = {
        "a b",
        "a_b",
        "a\tb",
        "ünïcödé",
        "日本語のキー",
        "🔑" * 60,
        "k" * 10_000,
        "k" * 9_999 + "K",
        "#",
        "##",
        "!gen",
        "!lock:x",
        "0:plain",
        "x" * 300,
        "\x00",
        "\ud800",
    }
    # look-alikes of hashed forms: the exact text a hashed key is stored under
    for base in ("a b", "ünïcödé", "k" * 10_000):
        keys.add("#" + digest(base))
    rng = random.Random(7)
    alphabet = "ab #!:_\t\n\x7f日🔑"
    while len(keys) < 1_000:
        keys.add("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))))
    return sorted(keys)


@pytest.fixture
async def memcache(memcached_server: MemcachedServer, app_name: str) -> AsyncIterator[Any]:
    interface = Memcache(port=memcached_server.port)
    Synchro(Sanic(app_name), interface=interface)
    yield interface
    await interface.aclose()


async def test_every_key_maps_to_a_distinct_valid_memcached_key(
    memcache: Any, memcached_server: MemcachedServer
) -> None:
    """Read back from memcached's own key listing: 1,000 tricky keys take 1,000 distinct,
    valid memcached keys (plus one for the namespace's generation)."""
    before = await _stored_names(memcached_server.port)
    await memcache.update({key: index for index, key in enumerate(tricky_keys())})
    added = await _stored_names(memcached_server.port) - before
    assert len(added) == 1_000 + 1
    assert all(VALID_KEY.fullmatch(name) for name in added)


async def test_a_thousand_tricky_keys_round_trip_to_distinct_values(
    memcache: Any, rng: random.Random
) -> None:
    keys = tricky_keys()
    await memcache.update({key: index for index, key in enumerate(keys)})
    assert await memcache.get_many(keys) == {key: index for index, key in enumerate(keys)}
    for index in rng.sample(range(1_000), 50):
        assert await memcache.get(keys[index]) == index


async def test_a_ttl_beyond_thirty_days_is_kept(memcache: Any) -> None:
    # memcached would read a relative 40 days as a date in 1970 and drop the item at once
    await memcache.set("long", "kept", ttl=40 * 86_400)
    assert await memcache.get("long") == "kept"
    left = await memcache.ttl("long")
    assert 40 * 86_400 - 5 < left <= 40 * 86_400 + 1


async def test_sub_second_ttls_round_up_and_never_expire_early(memcache: Any) -> None:
    await memcache.set("short", 1, ttl=0.5)
    started = time.monotonic()
    while await memcache.get("short") is not None:
        assert time.monotonic() - started < 5
        await asyncio.sleep(0.02)
    assert time.monotonic() - started >= 0.45


async def _stored_names(port: int) -> set[bytes]:
    """Every key memcached holds, from its own listing (``lru_crawler metadump``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"lru_crawler metadump all\r\n")
    await writer.drain()
    names = set()
    while (line := await reader.readline()) != b"END\r\n":
        names.add(unquote_to_bytes(line.split()[0].removeprefix(b"key=")))
    writer.close()
    return names


def memcached_stats(port: int) -> dict[str, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            data += sock.recv(65536)
    return dict(line.split()[1:3] for line in data.decode().splitlines() if line.startswith("STAT"))


async def test_clear_never_flushes_the_server(
    memcache: Any, memcached_server: MemcachedServer, app_name: str
) -> None:
    raw = aiomcache.Client("127.0.0.1", memcached_server.port)
    other = Memcache(port=memcached_server.port)
    Synchro(Sanic(app_name + "_other"), interface=other)
    try:
        await raw.set(b"foreign", b"kept")
        await other.set("theirs", 1)
        flushes = int(memcached_stats(memcached_server.port)["cmd_flush"])
        await memcache.update({"a": 1, "b": 2})
        await memcache.clear()
        assert await memcache.get_many(["a", "b"]) == {}
        assert await raw.get(b"foreign") == b"kept"
        assert await other.get("theirs") == 1
        assert int(memcached_stats(memcached_server.port)["cmd_flush"]) == flushes
    finally:
        await raw.close()
        await other.aclose()


async def test_clear_in_one_process_is_seen_by_another(
    memcached_server: MemcachedServer, app_name: str
) -> None:
    """Two interfaces on one namespace (two workers): one clears, the other sees it."""
    first = Memcache(port=memcached_server.port, prefix=f"{app_name}:")
    second = Memcache(port=memcached_server.port, prefix=f"{app_name}:")
    try:
        await first.set("k", "before")
        assert await second.get("k") == "before"  # second caches the generation now
        await first.clear()
        assert await second.get("k") is None
        assert await second.increment("n") == 1
        await second.set("k", "after")
        assert await first.get("k") == "after"
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_batch_sent_on_a_generation_a_clear_moved_is_sent_again_on_the_new_one(
    memcached_server: MemcachedServer, app_name: str
) -> None:
    """A batch (merged reads and writes in one exchange) checks the generation as a single
    operation does: after another process's clear, none of it reads or writes old data."""
    first = Memcache(port=memcached_server.port, prefix=f"{app_name}:")
    second = Memcache(port=memcached_server.port, prefix=f"{app_name}:")
    keys = [f"k{i}" for i in range(20)]
    try:
        await first.update({key: "before" for key in keys} | {"n": 100})
        assert await asyncio.gather(*(first.get(key) for key in keys)) == ["before"] * 20
        assert max(first.batch_sizes) > 1  # first batches from now on
        await second.clear()
        sizes = first.batch_sizes
        results = await asyncio.gather(
            *(first.get(key) for key in keys[:10]),
            *(first.set(key, "after") for key in keys[10:]),
            first.increment("n"),
            first.get_many(keys),
        )
        assert max(first.batch_sizes - sizes) == 22  # all of them in one batch
        assert results[:10] == [None] * 10
        assert results[20] == 1  # counted from zero on the new generation
        assert results[21] == {key: "after" for key in keys[10:]}
        assert await second.get_many(keys) == {key: "after" for key in keys[10:]}
    finally:
        await first.aclose()
        await second.aclose()


async def test_an_evicted_generation_key_never_brings_old_data_back(
    memcache: Any, memcached_server: MemcachedServer
) -> None:
    before = await _stored_names(memcached_server.port)
    await memcache.set("k", "old")
    added = await _stored_names(memcached_server.port) - before  # the data and generation
    raw = aiomcache.Client("127.0.0.1", memcached_server.port)
    try:
        (generation,) = [name for name in added if (await raw.get(name)) != b':"old"']
        await raw.delete(generation)  # what an eviction does
    finally:
        await raw.close()
    assert await memcache.get("k") is None
    await memcache.set("k", "new")
    assert await memcache.get("k") == "new"


def test_memcache_takes_an_aiomcache_client_for_its_settings(
    memcached_server: MemcachedServer, app_name: str
) -> None:
    client = aiomcache.Client("127.0.0.1", memcached_server.port, pool_size=3)
    interface = Memcache(client)
    Synchro(Sanic(app_name), interface=interface)
    assert repr(interface) == f"Memcache(127.0.0.1:{memcached_server.port})"
    assert interface.run_blocking(interface.increment("n")) == 1


def test_a_missing_client_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['aiomcache'] = None\n"
        "import sanic_synchro_ctx as s\n"
        "try:\n    s.Memcache()\nexcept ImportError as exc:\n    print(exc)\n"
    )
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert 'pip install "sanic-synchro-ctx[memcache]"' in result.stdout, result.stderr


async def test_memcached_restarted_mid_run(app_name: str) -> None:
    server = MemcachedServer().start()
    interface = Memcache(port=server.port)
    Synchro(Sanic(app_name), interface=interface)
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
            assert time.monotonic() - started < 10
        server = MemcachedServer(port=server.port).start()

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
        assert await interface.increment("n") == 1  # a restarted memcached starts empty
        assert interface.run_blocking(interface.get("back")) is True
    finally:
        await interface.aclose()
        server.stop()


async def _store_raw(port: int, key: bytes, data: bytes, flags: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"set %s %d 0 %d\r\n%s\r\n" % (key, flags, len(data), data))
    await writer.drain()
    assert await reader.readline() == b"STORED\r\n"
    writer.close()


async def _stored_name(port: int, key: str) -> bytes:
    """The memcached key an item of ours is stored under: the one key ending with
    ``:<key>`` in memcached's own key listing."""
    names = [name for name in await _stored_names(port) if name.endswith(b":" + key.encode())]
    assert len(names) == 1, names
    return names[0]


async def _raw_get(port: int, name: bytes) -> bytes | None:
    client = aiomcache.Client("127.0.0.1", port)
    try:
        value: bytes | None = await client.get(name)
        return value
    finally:
        await client.close()


async def test_an_item_written_by_another_client_is_refused_and_left_alone(
    memcache: Any, memcached_server: MemcachedServer
) -> None:
    """``set <key> 0 0 1`` / ``7`` by some other client: reads and increments refuse it
    with typed errors, and the item keeps its number. (``incr`` itself cannot be refused,
    so the step is applied and undone at once; memcached pads a number that changed width
    with a space, which its own number parser reads the same.)"""
    key = f"foreign-{random.getrandbits(48):x}"
    await memcache.set(key, "ours")
    name = await _stored_name(memcached_server.port, key)
    await _store_raw(memcached_server.port, name, b"7", 0)
    with pytest.raises(SynchroError, match="did not write"):
        await memcache.get(key)
    for step in (1, -1, 5):
        with pytest.raises(SynchroTypeError):
            await memcache.increment(key, step)
    stored = await _raw_get(memcached_server.port, name)
    assert stored is not None
    assert stored.rstrip(b" ") == b"7"


async def test_a_counter_memcached_refuses_to_incr_is_incremented_by_cas(
    memcache: Any, memcached_server: MemcachedServer
) -> None:
    """memcached misreads stored numbers of 2**63 or more now and then (its parser looks past
    the item for a minus sign); such a counter must still increment, exactly. A digit
    separator makes memcached refuse the item every time while it still reads as a number."""
    key = f"n-{random.getrandbits(48):x}"
    await memcache.set(key, 0)
    name = await _stored_name(memcached_server.port, key)
    await _store_raw(memcached_server.port, name, b"4611686018427387_904", 1)  # 2**62 + 0
    assert await memcache.get(key) == 0
    assert await memcache.increment(key, 5) == 5
    assert await memcache.decrement(key, 7) == -2
    await _store_raw(memcached_server.port, name, b"13835058055282163_711", 1)  # INT64_MAX
    with pytest.raises(SynchroValueError):
        await memcache.increment(key)
    assert await memcache.get(key) == 2**63 - 1


async def test_counters_far_from_zero_increment_and_overflow_exactly(memcache: Any) -> None:
    for start, by in [(2**62, 1), (-(2**62) - 1, -1), (2**63 - 2, 1), (-(2**63) + 1, -1)]:
        await memcache.set("n", start)
        assert await memcache.increment("n", by) == start + by
        with pytest.raises(SynchroValueError):
            await memcache.increment("n", 2**63 - 1 if by > 0 else -(2**63 - 1))
        assert await memcache.get("n") == start + by


class _Chunks:
    """A stream that hands out ``chunks`` one read at a time (what the server sent, cut
    where the network happened to cut it), then end of file."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    async def read(self, size: int) -> bytes:
        if not self._chunks:
            return b""
        chunk = self._chunks.pop(0)
        assert len(chunk) <= size
        return chunk


#: Replies of: a set, a get of three keys (two found; one value holding "END" and CRLFs,
#: one with flags), an add; and what read_replies must make of them.
_WIRE = (
    b"STORED\r\n"
    b"VALUE gen 0 4\r\n1234\r\n"
    b"VALUE k 0 11\r\nEND\r\nEND\r\nx\r\n"
    b"VALUE f 7 3\r\nabc\r\n"
    b"END\r\n"
    b"NOT_STORED\r\n"
)
_SHAPES: list[int | None] = [1, None, 1]


def _expected() -> list[Any]:
    from sanic_synchro_ctx.interfaces.memcache.client import Item

    items = {b"gen": Item(b"1234", 0), b"k": Item(b"END\r\nEND\r\nx", 0), b"f": Item(b"abc", 7)}
    return [[b"STORED"], items, [b"NOT_STORED"]]


async def test_replies_are_read_whatever_pieces_they_arrive_in() -> None:
    from sanic_synchro_ctx.interfaces.memcache.client import read_replies

    for cut in range(1, len(_WIRE)):
        pieces = [_WIRE[:cut], _WIRE[cut:]]
        assert await read_replies(_Chunks(pieces), _SHAPES, aiomcache.ClientException) == (
            _expected()
        ), cut
    bytewise = [_WIRE[i : i + 1] for i in range(len(_WIRE))]
    assert await read_replies(_Chunks(bytewise), _SHAPES, aiomcache.ClientException) == (
        _expected()
    )


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (_WIRE[:-5], ConnectionResetError),  # the server closed mid-reply
        (_WIRE + b"STORED\r\n", aiomcache.ClientException),  # more than was asked for
        (_WIRE.replace(b"VALUE f 7 3", b"VALUE f 7"), aiomcache.ClientException),
        (_WIRE.replace(b"VALUE f 7 3", b"VALUE f x 3"), aiomcache.ClientException),
        (_WIRE.replace(b"abc\r\n", b"abcd\r\n"), aiomcache.ClientException),  # length lies
        (b"STORED\r\nSERVER_ERROR out of memory\r\n", aiomcache.ClientException),
    ],
    ids=["end-of-file", "extra-data", "short-header", "bad-flags", "bad-length", "error"],
)
async def test_a_reply_that_is_not_what_was_asked_for_is_refused(
    wire: bytes, error: type[Exception]
) -> None:
    from sanic_synchro_ctx.interfaces.memcache.client import read_replies

    with pytest.raises(error):
        await read_replies(_Chunks([wire]), _SHAPES, aiomcache.ClientException)
