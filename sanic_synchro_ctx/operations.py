"""The operations of the context object, in one table.

Each operation's signature is its method on :class:`~.interfaces.base.BaseSynchroInterface`;
the two front ends and the pipelines repeat it, and the suite compares each of them with
it (``inspect.signature``). The table says the rest: whether the operation may change what
is stored, which keys it touches (pipelines order the operations on one key, see
:func:`touched`), and whether a pipeline queues it (:data:`PIPELINED`). Adding an
operation: its row here, its method on the base (and a primitive if it needs one), its
methods on the front ends and, if it pipelines, on the pipelines, and its contract test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["EVERYTHING", "PIPELINED", "TABLE", "Operation", "touched"]

#: Which keys an operation touches: its first argument; every positional argument; the
#: keys of the list or the mapping it is given; a lock's name; every key of the namespace;
#: none.
Touches = Literal["first", "arguments", "list", "mapping", "lock", "namespace", "none"]


@dataclass(frozen=True)
class Operation:
    """One operation of the context object."""

    name: str
    #: May change what is stored (a rate limit's budget, a key's expiry included).
    writes: bool
    touches: Touches
    #: A pipeline queues it (scan, publish and the coordination objects are not).
    pipelines: bool


# fmt: off
TABLE: tuple[Operation, ...] = (
    Operation("get", writes=False, touches="first", pipelines=True),
    Operation("set", writes=True, touches="first", pipelines=True),
    Operation("delete", writes=True, touches="arguments", pipelines=True),
    Operation("get_many", writes=False, touches="list", pipelines=True),
    Operation("update", writes=True, touches="mapping", pipelines=True),
    Operation("set_default", writes=True, touches="mapping", pipelines=True),
    Operation("setdefault", writes=True, touches="first", pipelines=True),
    Operation("increment", writes=True, touches="first", pipelines=True),
    Operation("decrement", writes=True, touches="first", pipelines=True),
    Operation("rate_limit", writes=True, touches="first", pipelines=True),
    Operation("replace", writes=True, touches="first", pipelines=True),
    Operation("compare_and_set", writes=True, touches="first", pipelines=True),
    Operation("expire", writes=True, touches="first", pipelines=True),
    Operation("ttl", writes=False, touches="first", pipelines=True),
    Operation("locked", writes=False, touches="lock", pipelines=True),
    Operation("keys", writes=False, touches="namespace", pipelines=True),
    Operation("clear", writes=True, touches="namespace", pipelines=True),
    Operation("scan", writes=False, touches="namespace", pipelines=False),
    Operation("publish", writes=False, touches="none", pipelines=False),
)
# fmt: on

#: The operations a pipeline queues.
PIPELINED = frozenset(operation.name for operation in TABLE if operation.pipelines)
_BY_NAME = {operation.name: operation for operation in TABLE}

#: What an operation on the whole namespace touches.
EVERYTHING: tuple[str] = ("*",)


def touched(name: str, args: Sequence[Any]) -> Sequence[Any]:
    """The keys operation ``name`` called with ``args`` reads or writes (a lock's name as
    ``("lock", name)``: apart from a key of the same name); :data:`EVERYTHING` for the
    whole namespace. TypeError where the arguments hold no keys (the operation fails on
    its own)."""
    how = _BY_NAME[name].touches
    if how == "first":
        return args[:1]
    if how == "arguments":
        return args
    if how == "list":
        keys = args[0]
        return [keys] if isinstance(keys, str) else list(keys)
    if how == "mapping":
        mapping = args[0]
        return list(mapping) if isinstance(mapping, Mapping) else [mapping]
    if how == "lock":
        return [("lock", args[0])]
    if how == "namespace":
        return EVERYTHING
    return ()
