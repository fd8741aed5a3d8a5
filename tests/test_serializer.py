"""Serializers: canonical JSON by default, signed pickle on request."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import inspect
import sys
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sanic_synchro_ctx import (
    InMemory,
    Synchro,
    SynchroSerializationError,
    SynchroTypeError,
    SynchroValueError,
)
from sanic_synchro_ctx.serializer import MAX_DEPTH, JSONSerializer, PickleSerializer


def test_json_is_canonical() -> None:
    dumps = JSONSerializer().dumps
    assert dumps({"b": 1, "a": [1.0, None, True]}) == b'{"a":[1.0,null,true],"b":1}'
    assert dumps({"x": 1, "y": 2}) == dumps({"y": 2, "x": 1})
    assert dumps("日本") == b'"\\u65e5\\u672c"'  # ASCII only: safe for any backend
    assert dumps(42) == b"42"
    assert dumps(-7) == b"-7"


def test_json_refuses_unreadable_bytes() -> None:
    with pytest.raises(SynchroSerializationError):
        JSONSerializer().loads(b"\xff not json")


def test_pickle_round_trips_python_objects() -> None:
    serializer = PickleSerializer(b"s" * 32)
    value = {"when": datetime.date(2026, 11, 21), "tags": {"a", "b"}, "pair": (1, 2)}
    assert serializer.loads(serializer.dumps(value)) == value
    assert serializer.dumps(12) == b"12"  # integers stay counters
    assert serializer.loads(b"12") == 12


def test_pickle_refuses_a_bad_signature() -> None:
    mine, theirs = PickleSerializer(b"m" * 32), PickleSerializer(b"t" * 32)
    forged = theirs.dumps(["anything"])
    with pytest.raises(SynchroSerializationError, match="signature"):
        mine.loads(forged)
    tampered = bytearray(mine.dumps(["x"]))
    tampered[-2] ^= 1
    with pytest.raises(SynchroSerializationError):
        mine.loads(bytes(tampered))


def test_pickle_needs_a_real_secret() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        PickleSerializer("short")


def test_an_interface_with_the_pickle_serializer(app: Any) -> None:
    Synchro(app, interface=InMemory(serializer=PickleSerializer("a-secret-of-sixteen+")))
    ctx = app.ctx.synchro.sync
    ctx.set("date", datetime.date(2026, 1, 1))
    assert ctx.get("date") == datetime.date(2026, 1, 1)
    assert ctx.increment("n", 5) == 5
    assert ctx.get("n") == 5
    with pytest.raises(SynchroTypeError):
        ctx.increment("date")
    with pytest.raises(SynchroSerializationError):
        ctx.set("lambda", lambda: None)


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def test_the_deepest_value_accepted_reads_back_from_a_deep_call_stack() -> None:
    """A value at MAX_DEPTH round-trips even when the reader is already deep in its own
    stack (a handler inside middleware, decorators, a framework)."""
    serializer = JSONSerializer()
    value = _nested(MAX_DEPTH)
    data = serializer.dumps(value)
    with pytest.raises(SynchroValueError, match="deep"):
        serializer.dumps([value])
    limit = sys.getrecursionlimit()

    def read_at(depth: int) -> Any:
        if depth:
            return read_at(depth - 1)
        return serializer.loads(data)

    # leave only a little more than MAX_DEPTH frames of the interpreter's limit
    here = len(inspect.stack())
    assert read_at(limit - here - MAX_DEPTH - 40) == value


def test_depth_counts_containers_only() -> None:
    serializer = JSONSerializer()
    flat = {f"k{i}": [i, {"x": "y"}] for i in range(1_000)}
    assert serializer.loads(serializer.dumps(flat)) == flat


# -- orjson (the ``orjson`` extra): the same bytes with and without it --------------------

FAST, STANDARD = JSONSerializer(fast=True), JSONSerializer(fast=False)


class Colour(enum.Enum):
    RED = 1


class Size(enum.IntEnum):
    BIG = 2


class Text(str):
    pass


@dataclasses.dataclass
class Point:
    x: int


class Opaque:
    """A value no JSON encoder knows; its repr is the same in every process (xdist's
    workers compare the test ids they collected)."""

    def __repr__(self) -> str:
        return "Opaque()"


#: Values the two must write alike, or refuse alike: what orjson writes its own way
#: (floats, non-ASCII, escapes, DEL, ints past 64 bits, lone surrogates) and what it accepts
#: but the standard encoder refuses (enums, UUIDs, dataclasses, datetimes, subclasses).
TRICKY_VALUES: list[Any] = [
    {"user": "ada", "roles": ["admin", "dev"], "visits": 12},
    {"b": {"z": 1, "a": [None, True, False]}, "a": ()},
    [1.5, 1e-05, 1e16, 1e22, -0.0, 0.1, 2.5e-300, 123456789.123456789],
    {"f": 1.0},
    "日本",
    {"日本": 1},
    {"k": "tab\there"},
    {"k": 'quote"'},
    {"k": "back\\slash"},
    ["\x7f", "\x1f", "\x00"],
    [2**63 - 1, -(2**63), 2**63, 2**64, -(2**64) - 1, 10**30],
    ["\ud800"],
    {"": {"": []}},
    [[[[[]]]]],
    {"z": 1, "Z": 2, "_": 3, "0": 4, "a b": 5},
    {"x": Colour.RED},
    [Size.BIG],
    {"x": Size.BIG},
    [Text("sub")],
    {Text("k"): 1},
    {1: "int key"},
    [uuid.UUID(int=7)],
    [Point(1)],
    [datetime.datetime(2026, 1, 1)],
    {"set": {1, 2}},
    [b"bytes"],
    [float("nan")],
    [Opaque()],
]


def _written(serializer: JSONSerializer, value: Any) -> bytes | str:
    try:
        return serializer.dumps(value)
    except (SynchroSerializationError, SynchroValueError) as exc:
        return type(exc).__name__


def _exactly(value: Any) -> Any:
    """``value`` with every type spelled out (so 1 and 1.0, True and 1 differ)."""
    if isinstance(value, dict):
        return {key: _exactly(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_exactly(item) for item in value]
    return (type(value), repr(value))


@pytest.mark.parametrize("value", TRICKY_VALUES, ids=repr)
def test_orjson_writes_the_standard_bytes_or_leaves_it_to_the_standard_encoder(
    value: Any,
) -> None:
    assert _written(FAST, value) == _written(STANDARD, value)


@pytest.mark.parametrize("value", TRICKY_VALUES, ids=repr)
def test_what_either_wrote_reads_back_alike(value: Any) -> None:
    data = _written(STANDARD, value)
    if isinstance(data, bytes):
        assert _exactly(FAST.loads(data)) == _exactly(STANDARD.loads(data))


#: Stored bytes (written by other tools, or damaged) the two must read alike, or refuse alike.
TRICKY_BYTES = [
    b"18446744073709551616",  # orjson alone would read a float
    b"[18446744073709551616]",
    b'{"n":-9223372036854775809}',
    b"[9223372036854775807,-9223372036854775808]",
    b"[1.0,1e5,1E5,-0.0,0.1,1e400,2.5e-300]",
    b"[123456789012345678901234567890.5]",
    b'{"k":"v1.2"}',
    b"NaN",
    b"[Infinity,-Infinity]",
    b'"\\ud800"',
    b'"\\u00e9\\n\\"\\\\"',
    b'{"a":1,"a":2}',
    b" [ 1 , 2 ] ",
    b"[1,]",
    b"{'a':1}",
    b"\xef\xbb\xbf[1]",
    b'"\xff"',
    b"",
    b"-",
    b"01",
    b"-0",
    b"[01]",
    b"tru",
    b"[1] x",
    b"[" * 70 + b"]" * 70,
]


def _read(serializer: JSONSerializer, data: bytes) -> Any:
    try:
        return _exactly(serializer.loads(data))
    except SynchroSerializationError:
        return "refused"


@pytest.mark.parametrize("data", TRICKY_BYTES, ids=repr)
def test_orjson_reads_stored_bytes_as_the_standard_decoder_does(data: bytes) -> None:
    assert _read(FAST, data) == _read(STANDARD, data)


_keys = st.text(max_size=6)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=2_000, deadline=None)
@given(_values)
def test_any_json_value_gets_the_same_bytes_and_reads_back_the_same(value: Any) -> None:
    data = STANDARD.dumps(value)
    assert FAST.dumps(value) == data
    assert _exactly(FAST.loads(data)) == _exactly(STANDARD.loads(data))


def test_orjson_does_the_work_where_it_can(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a bytes check: that the fast path is taken at all (else the above is vacuous).
    orjson's own functions are watched: a serializer made now takes them from the module."""
    assert FAST.fast
    assert not STANDARD.fast
    assert JSONSerializer().fast  # installed: the default uses it
    calls: list[str] = []
    real_dumps, real_loads = orjson.dumps, orjson.loads
    monkeypatch.setattr(
        orjson, "dumps", lambda *a, **k: calls.append("dumps") or real_dumps(*a, **k)
    )
    monkeypatch.setattr(orjson, "loads", lambda data: calls.append("loads") or real_loads(data))
    serializer = JSONSerializer(fast=True)
    doc = {"user": "ada", "roles": ["admin", "dev"], "visits": 12}
    assert serializer.loads(serializer.dumps(doc)) == doc
    assert calls == ["dumps", "loads"]
    calls.clear()
    assert serializer.loads(serializer.dumps({"f": 1.5})) == {"f": 1.5}
    assert calls == []  # floats: the standard encoder and decoder


def test_fast_true_without_orjson_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "orjson", None)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "sanic-synchro-ctx\[orjson\]"'):
        JSONSerializer(fast=True)
    assert not JSONSerializer().fast  # the default simply goes without
