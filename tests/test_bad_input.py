"""Bad input: each case raises its documented typed error, before anything is written.

Every case runs on every interface and front end, against a namespace holding known data;
afterwards the namespace must hold exactly that data, with the same expiries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from sanic_synchro_ctx import (
    Synchro,
    SynchroError,
    SynchroSerializationError,
    SynchroTypeError,
    SynchroValueError,
)
from sanic_synchro_ctx.checks import MAX_KEY_LENGTH, MAX_TTL
from sanic_synchro_ctx.interfaces.base import BaseSynchroInterface
from sanic_synchro_ctx.serializer import MAX_DEPTH

from .frontends import BlockingAsAsync

BEFORE = {"counter": 5, "text": "hello", "doc": {"a": [1, 2]}, "nothing": None}
HUGE = "x" * 1_100_000
circular: list[Any] = []
circular.append(circular)
TOO_DEEP: Any = "bottom"
for _ in range(MAX_DEPTH + 1):
    TOO_DEEP = [TOO_DEEP]
HUGE_NUMBER = 10**400

Op = Callable[[Any], Any]

CASES: list[tuple[str, Op, type[SynchroError]]] = [
    # keys
    ("int key", lambda c: c.set(1, "v"), SynchroTypeError),
    ("bytes key", lambda c: c.set(b"k", "v"), SynchroTypeError),
    ("None key", lambda c: c.get(None), SynchroTypeError),
    ("tuple key", lambda c: c.delete(("a", "b")), SynchroTypeError),
    ("empty key on set", lambda c: c.set("", "v"), SynchroValueError),
    ("empty key on get", lambda c: c.get(""), SynchroValueError),
    ("empty key among deletes", lambda c: c.delete("counter", ""), SynchroValueError),
    (
        "key over the length limit",
        lambda c: c.set("k" * (MAX_KEY_LENGTH + 1), 1),
        SynchroValueError,
    ),
    ("str passed as get_many keys", lambda c: c.get_many("counter"), SynchroTypeError),
    ("non-iterable get_many keys", lambda c: c.get_many(5), SynchroTypeError),
    ("non-str key in get_many", lambda c: c.get_many(["counter", 3]), SynchroTypeError),
    ("non-mapping update", lambda c: c.update([("a", 1)]), SynchroTypeError),
    ("non-str key in update", lambda c: c.update({"a": 1, 2: 2}), SynchroTypeError),
    ("empty key in set_default", lambda c: c.set_default({"": 1}), SynchroValueError),
    # values
    ("object() value", lambda c: c.set("text", object()), SynchroSerializationError),
    ("set value", lambda c: c.set("text", {1, 2}), SynchroSerializationError),
    ("bytes value", lambda c: c.set("text", b"raw"), SynchroSerializationError),
    ("NaN value", lambda c: c.set("text", math.nan), SynchroSerializationError),
    ("infinite value", lambda c: c.set("text", [math.inf]), SynchroSerializationError),
    ("dict with int keys", lambda c: c.set("doc", {1: "a"}), SynchroSerializationError),
    (
        "nested non-str dict key",
        lambda c: c.set("doc", [{"a": {None: 1}}]),
        SynchroSerializationError,
    ),
    ("circular value", lambda c: c.set("doc", circular), SynchroSerializationError),
    ("value over the size limit", lambda c: c.set("text", HUGE), SynchroValueError),
    ("int beyond JSON's digits", lambda c: c.set("text", 10**5000), SynchroSerializationError),
    ("value nested too deeply", lambda c: c.set("doc", TOO_DEEP), SynchroValueError),
    ("too deep inside a dict", lambda c: c.set("doc", {"a": TOO_DEEP}), SynchroValueError),
    (
        "bad value in update",
        lambda c: c.update({"text": "new", "x": object()}),
        SynchroSerializationError,
    ),
    (
        "bad value in set_default",
        lambda c: c.set_default({"new": object()}),
        SynchroSerializationError,
    ),
    ("bad value in setdefault", lambda c: c.setdefault("new", {1, 2}), SynchroSerializationError),
    ("bad replacement", lambda c: c.replace("text", object()), SynchroSerializationError),
    (
        "bad compare_and_set new",
        lambda c: c.compare_and_set("text", "hello", object()),
        SynchroSerializationError,
    ),
    (
        "huge compare_and_set new",
        lambda c: c.compare_and_set("text", "hello", HUGE),
        SynchroValueError,
    ),
    # TTLs
    ("zero ttl", lambda c: c.set("text", "new", ttl=0), SynchroValueError),
    ("negative ttl", lambda c: c.set("text", "new", ttl=-1), SynchroValueError),
    ("NaN ttl", lambda c: c.set("text", "new", ttl=math.nan), SynchroValueError),
    ("infinite ttl", lambda c: c.expire("text", math.inf), SynchroValueError),
    ("ttl over ten years", lambda c: c.set("text", "new", ttl=MAX_TTL + 1), SynchroValueError),
    ("ttl beyond float", lambda c: c.set("text", "new", ttl=HUGE_NUMBER), SynchroValueError),
    ("expire beyond float", lambda c: c.expire("text", HUGE_NUMBER), SynchroValueError),
    ("update ttl beyond float", lambda c: c.update({"a": 1}, ttl=HUGE_NUMBER), SynchroValueError),
    (
        "set_default ttl beyond float",
        lambda c: c.set_default({"new": 1}, ttl=HUGE_NUMBER),
        SynchroValueError,
    ),
    (
        "compare_and_set ttl beyond float",
        lambda c: c.compare_and_set("text", "hello", "x", ttl=HUGE_NUMBER),
        SynchroValueError,
    ),
    ("str ttl", lambda c: c.set("text", "new", ttl="5"), SynchroTypeError),
    ("bool ttl", lambda c: c.update({"text": "new"}, ttl=True), SynchroTypeError),
    (
        "negative ttl in compare_and_set",
        lambda c: c.compare_and_set("text", "hello", "x", ttl=-5),
        SynchroValueError,
    ),
    ("negative ttl in set_default", lambda c: c.set_default({"new": 1}, ttl=-5), SynchroValueError),
    # counters
    ("increment of a str", lambda c: c.increment("text"), SynchroTypeError),
    ("increment of a dict", lambda c: c.increment("doc"), SynchroTypeError),
    ("increment of a stored None", lambda c: c.increment("nothing"), SynchroTypeError),
    ("bool step", lambda c: c.increment("counter", True), SynchroTypeError),
    ("float step", lambda c: c.increment("counter", 1.0), SynchroTypeError),
    ("str step", lambda c: c.decrement("counter", "1"), SynchroTypeError),
    ("step over 64 bits", lambda c: c.increment("counter", 2**63), SynchroValueError),
    ("decrement step of -2**63", lambda c: c.decrement("counter", -(2**63)), SynchroValueError),
    ("result over 64 bits", lambda c: c.increment("counter", 2**63 - 1), SynchroValueError),
    # locks
    ("empty lock name", lambda c: c.lock(""), SynchroValueError),
    ("int lock name", lambda c: c.lock(7), SynchroTypeError),
    ("lock without lease", lambda c: c.lock("l", ttl=None), SynchroTypeError),
    ("negative lock lease", lambda c: c.lock("l", ttl=-1), SynchroValueError),
    ("negative lock timeout", lambda c: c.lock("l", timeout=-1), SynchroValueError),
    ("NaN lock timeout", lambda c: c.lock("l", timeout=math.nan), SynchroValueError),
    ("lock lease beyond float", lambda c: c.lock("l", ttl=HUGE_NUMBER), SynchroValueError),
    ("lock timeout beyond float", lambda c: c.lock("l", timeout=HUGE_NUMBER), SynchroValueError),
    ("str auto_renew", lambda c: c.lock("l", auto_renew="yes"), SynchroTypeError),
    ("negative extend", lambda c: c.lock("l").extend(-1), SynchroValueError),
    ("empty name for locked", lambda c: c.locked(""), SynchroValueError),
    # coordination
    ("negative increment ttl", lambda c: c.increment("new", ttl=-1), SynchroValueError),
    ("zero decrement ttl", lambda c: c.decrement("new", ttl=0), SynchroValueError),
    ("str increment ttl", lambda c: c.increment("new", ttl="5"), SynchroTypeError),
    ("NaN increment ttl", lambda c: c.increment("counter", ttl=math.nan), SynchroValueError),
    ("zero rate limit", lambda c: c.rate_limit("a", limit=0, per=1), SynchroValueError),
    ("negative rate limit", lambda c: c.rate_limit("a", limit=-5, per=1), SynchroValueError),
    ("float rate limit", lambda c: c.rate_limit("a", limit=2.5, per=1), SynchroTypeError),
    ("zero rate period", lambda c: c.rate_limit("a", limit=5, per=0), SynchroValueError),
    ("negative rate period", lambda c: c.rate_limit("a", limit=5, per=-1), SynchroValueError),
    ("NaN rate period", lambda c: c.rate_limit("a", limit=5, per=math.nan), SynchroValueError),
    ("str rate period", lambda c: c.rate_limit("a", limit=5, per="1"), SynchroTypeError),
    ("cost over the limit", lambda c: c.rate_limit("a", limit=5, per=1, cost=6), SynchroValueError),
    ("zero cost", lambda c: c.rate_limit("a", limit=5, per=1, cost=0), SynchroValueError),
    ("limit over 2**63", lambda c: c.rate_limit("a", limit=2**63, per=86_400), SynchroValueError),
    ("limit over 1e6/s", lambda c: c.rate_limit("a", limit=10**6 + 1, per=1), SynchroValueError),
    ("empty rate key", lambda c: c.rate_limit("", limit=5, per=1), SynchroValueError),
    ("zero semaphore limit", lambda c: c.semaphore("s", 0), SynchroValueError),
    ("str semaphore limit", lambda c: c.semaphore("s", "3"), SynchroTypeError),
    ("empty semaphore name", lambda c: c.semaphore("", 3), SynchroValueError),
    ("negative semaphore lease", lambda c: c.semaphore("s", 3, ttl=-1), SynchroValueError),
]


#: Every key a case could write (plus the data): none may change.
WATCHED = [*BEFORE, "new", "x", "a", "b", "c", "w", "lambda"]


async def snapshot(ctx: Any) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    keys = sorted(await ctx.keys()) if ctx.interface.lists_keys else []
    values = await ctx.get_many(WATCHED)
    expiries = {key: await ctx.ttl(key) is not None for key in WATCHED}
    return keys, values, expiries


#: The cases whose error depends on what is stored: they reach the backend, on every
#: interface and front end. Every other case is refused by the checks every interface
#: shares, before any backend call (test_invalid_input_never_reaches_the_backend): those
#: run on one interface, both front ends.
STORED = {
    "increment of a str",
    "increment of a dict",
    "increment of a stored None",
    "result over 64 bits",
}
VALIDATION = [case for case in CASES if case[0] not in STORED]
ON_STORED_DATA = [case for case in CASES if case[0] in STORED]


def _cases(cases: list[tuple[str, Op, type[SynchroError]]]) -> Any:
    return pytest.mark.parametrize(
        ("operation", "expected"), [c[1:] for c in cases], ids=[c[0] for c in cases]
    )


async def _attempt(operation: Op, ctx: Any) -> None:
    result = operation(ctx)  # lock() raises at once; operations raise when awaited
    if hasattr(result, "__await__"):
        await result


async def _raises_and_changes_nothing(
    ctx: Any, operation: Op, expected: type[SynchroError]
) -> None:
    await ctx.update(BEFORE)
    before = await snapshot(ctx)
    assert before[1] == BEFORE

    with pytest.raises(expected) as raised:
        await _attempt(operation, ctx)
    assert type(raised.value) is expected
    assert await snapshot(ctx) == before
    # no rate was counted, no lock or semaphore place taken
    assert (await ctx.rate_limit("a", limit=1, per=60)).allowed
    assert not await ctx.locked("l")
    async with ctx.semaphore("s", 1, timeout=0):
        pass


@pytest.mark.parametrize("interface", ["inmemory"], indirect=True)
@_cases(VALIDATION)
async def test_bad_input_raises_typed_error_and_changes_nothing(
    ctx: Any, operation: Op, expected: type[SynchroError]
) -> None:
    await _raises_and_changes_nothing(ctx, operation, expected)


@_cases(ON_STORED_DATA)
async def test_bad_stored_data_raises_typed_error_and_changes_nothing(
    ctx: Any, operation: Op, expected: type[SynchroError]
) -> None:
    await _raises_and_changes_nothing(ctx, operation, expected)


async def test_invalid_input_never_reaches_the_backend(
    app: Any, make_interface: Callable[..., BaseSynchroInterface]
) -> None:
    """Every validation case is refused before any primitive runs (the docs' example
    interface, each ``raw_*`` primitive watched); the stored-data cases do reach one."""
    interface = make_interface("example-dict")
    calls: list[str] = []

    def watched(name: str, primitive: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return primitive(*args, **kwargs)

        return call

    for name in dir(interface):
        if name.startswith("raw_"):
            setattr(interface, name, watched(name, getattr(interface, name)))
    Synchro(app, interface=interface)
    ctx = app.ctx.synchro
    await ctx.update(BEFORE)
    for front_end in (ctx, BlockingAsAsync(ctx.sync)):
        for name, operation, expected in CASES:
            calls.clear()
            with pytest.raises(expected):
                await _attempt(operation, front_end)
            if name in STORED:
                assert calls, name
            else:
                assert calls == [], (name, calls)
    await interface.aclose()


def test_error_classes_are_also_the_builtin_kinds() -> None:
    assert issubclass(SynchroTypeError, TypeError)
    assert issubclass(SynchroValueError, ValueError)
    assert issubclass(SynchroSerializationError, TypeError)
    for cls in (SynchroTypeError, SynchroValueError, SynchroSerializationError):
        assert issubclass(cls, SynchroError)
