"""Serializers: canonical JSON by default, signed pickle on request."""

from __future__ import annotations

import datetime
import inspect
import sys
from typing import Any

import pytest

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
