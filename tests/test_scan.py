"""scan() on every interface x front end: pages of the namespace's keys, a glob on the
key as written, every key present throughout exactly once while others come and go."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sanic_synchro_ctx import SynchroTypeError, SynchroUnsupported, SynchroValueError
from sanic_synchro_ctx.globs import compile_glob

from .registry import LISTING, SHARED, UNLISTING

pytestmark = pytest.mark.timeout(120)

#: Where the interfaces can list keys (the others are tested for refusing).
listing = pytest.mark.parametrize("interface", LISTING, indirect=True)


async def scanned(ctx: Any, *args: Any, **kwargs: Any) -> list[str]:
    return [key async for key in ctx.scan(*args, **kwargs)]


@pytest.mark.parametrize("interface", UNLISTING, indirect=True)
async def test_scan_is_unsupported_where_keys_cannot_be_listed(ctx: Any) -> None:
    await ctx.set("k", 1)
    with pytest.raises(SynchroUnsupported):
        await scanned(ctx)


@listing
async def test_scan_yields_every_key_of_the_namespace_once(ctx: Any) -> None:
    keys = [f"k{i}" for i in range(1_234)] + ["ünï ✓", "*", "x" * 1_000]
    await ctx.update({key: 1 for key in keys})
    found = await scanned(ctx, count=100)
    assert sorted(found) == sorted(keys)
    assert await scanned(ctx, count=5_000) != []


@listing
async def test_scan_of_an_empty_namespace_yields_nothing(ctx: Any) -> None:
    assert await scanned(ctx) == []


@listing
async def test_match_is_a_glob_on_the_key_as_written(ctx: Any) -> None:
    await ctx.update({"user:1": 1, "user:22": 2, "users": 3, "u*": 4, "user:[x]": 5, "a?b": 6})
    assert sorted(await scanned(ctx, "user:*")) == ["user:1", "user:22", "user:[x]"]
    assert sorted(await scanned(ctx, "user:?")) == ["user:1"]
    assert sorted(await scanned(ctx, "u\\*")) == ["u*"]
    assert sorted(await scanned(ctx, "user:\\[x]")) == ["user:[x]"]
    assert sorted(await scanned(ctx, "[au]*", count=1)) == sorted(
        ["user:1", "user:22", "users", "u*", "user:[x]", "a?b"]
    )
    assert await scanned(ctx, "[^u]?b") == ["a?b"]
    assert await scanned(ctx, "[!a]?b") == ["a?b"]  # as in Redis, ! does not negate
    assert await scanned(ctx, "user:[\\[]x[\\]]") == ["user:[x]"]  # escapes inside a set


@pytest.mark.parametrize("shared_pair", [k for k in SHARED if k in LISTING], indirect=True)
async def test_scan_never_reaches_another_namespace(shared_pair: tuple[Any, Any]) -> None:
    first, second = shared_pair
    await first.set("mine", 1)
    await second.set("theirs", 2)
    assert [key async for key in first.scan()] == ["mine"]
    assert [key async for key in second.scan("*")] == ["theirs"]


async def test_bad_scan_arguments_raise_before_reading(ctx: Any) -> None:
    with pytest.raises(SynchroValueError):
        ctx.scan(count=0)
    with pytest.raises(SynchroTypeError):
        ctx.scan(count=True)
    with pytest.raises(SynchroTypeError):
        ctx.scan(match=b"user:*")


@listing
async def test_keys_present_throughout_come_once_while_others_change(ctx: Any) -> None:
    """10,000 stable keys scanned in pages of 500 while two writers add and delete other
    keys: every stable key exactly once."""
    stable = [f"stable:{i}" for i in range(10_000)]
    for start in range(0, len(stable), 1_000):
        await ctx.update({key: i for i, key in enumerate(stable[start : start + 1_000])})
    blocking = ctx.interface  # writers use the interface's blocking path, from threads
    stop = threading.Event()
    progress = threading.Condition()
    written = [0, 0]

    def writer(number: int) -> None:
        try:
            while not stop.is_set():
                step = written[number]
                blocking.run_blocking(blocking.set(f"churn:{number}:{step % 300}", step))
                blocking.run_blocking(blocking.delete(f"churn:{number}:{(step + 150) % 300}"))
                with progress:
                    written[number] += 1
                    progress.notify_all()
        finally:
            blocking.close_thread()

    def writers_moved_on(since: list[int]) -> None:
        """Wait (bounded) until both writers changed keys since ``since``."""
        with progress:
            moved = progress.wait_for(
                lambda: min(w - s for w, s in zip(written, since, strict=True)) > 0, 10
            )
        assert moved, "the writers made no progress"

    threads = [threading.Thread(target=writer, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    pages = 0
    try:
        found = []
        mark = list(written)
        async for key in ctx.scan(count=500):
            found.append(key)
            if len(found) % 500 == 0:  # between two pages: keys were added and deleted
                writers_moved_on(mark)
                mark = list(written)
                pages += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert pages >= 19
    seen = [key for key in found if key.startswith("stable:")]
    assert len(seen) == len(set(seen)) == len(stable)
    assert set(seen) == set(stable)


#: The characters of generated keys and patterns: every one that means something to a glob.
GLOB_ALPHABET = "ab-]^[!\\*?"


def test_globs_match_what_redis_scan_match_matches(redis_server: Any, rng: Any) -> None:
    """Differential: 3,000 generated patterns, each matched by the library and by a real
    Redis ``SCAN MATCH`` over the same 600 keys: the same keys, every time (ASCII keys: on
    non-ASCII ones the library matches characters where Redis matches bytes, by design)."""
    import redis

    keys = {"".join(rng.choices(GLOB_ALPHABET, k=rng.randint(1, 4))) for _ in range(600)}
    patterns = ["".join(rng.choices(GLOB_ALPHABET, k=rng.randint(1, 7))) for _ in range(3_000)]
    space = f"glob-{rng.getrandbits(32)}:"  # literal: only these keys can match
    client = redis.Redis(port=redis_server.port, db=3)
    try:
        client.mset({space + key: 1 for key in keys})
        batch = client.pipeline(transaction=False)
        for pattern in patterns:
            batch.scan(0, match=space + pattern, count=100_000)
        mismatches = []
        for pattern, (cursor, found) in zip(patterns, batch.execute(), strict=True):
            assert cursor == 0  # one call saw the whole table
            theirs = {key.decode()[len(space) :] for key in found}
            matches = compile_glob(pattern)
            ours = {key for key in keys if matches(key)}
            if ours != theirs:
                mismatches.append((pattern, sorted(ours ^ theirs)[:5]))
        assert mismatches == []
    finally:
        client.delete(*(space + key for key in keys))
        client.close()
