"""How values are stored in memcached items: counters ``incr`` can add to, marked values.

Integers of magnitude below 2**61 are stored as decimal ``value + 2**62`` with the counter
flag, so memcached's unsigned ``incr`` does signed arithmetic (a negative step is a modular
``incr``). Steps of 2**32 or more, and counters beyond 2**61, go through an exact gets/cas
loop that refuses an overflow before anything is written: memcached cannot be told to
refuse one, so ``incr`` is only ever used where the sum stays far inside the signed range
(a counter pushed past 2**61 by ``incr`` is moved out of its reach at once). The offset also
keeps stored numbers below 2**63, which memcached misreads now and then. Every other value
carries a marker byte that memcached never reads as a number; a number written into one of
our keys by another client is told apart by the size of ``incr``'s answer.
"""

from __future__ import annotations

import re

from ...checks import INT64_MAX
from ...errors import SynchroError
from .client import Item

__all__ = [
    "COUNTER",
    "DRIFT",
    "INTEGER",
    "MARK",
    "NATIVE",
    "STEP",
    "WRAP",
    "decode",
    "encode",
    "stored_form",
    "value_of",
]

OFFSET = 1 << 62
WRAP = 1 << 64
#: Counters ``incr`` may touch hold values of magnitude below this (stored below 2**63).
NATIVE = 1 << 61
#: Larger steps go through gets/cas, so that ``incr`` can never leave the signed range.
STEP = 1 << 32
#: How far past NATIVE a counter of ours can be pushed by increments in flight at once.
DRIFT = 1 << 50
#: Flags bit 0: the value is an offset-encoded counter (bits 1-31: the deadline, .expiry).
COUNTER = 1
#: Prefix of every non-counter value: memcached never reads it as a number.
MARK = b":"
INTEGER = re.compile(rb"-?(?:0|[1-9][0-9]*)")


def encode(number: int) -> bytes:
    """A counter as memcached stores it: ``(number + 2**62) mod 2**64`` in decimal."""
    return str((number + OFFSET) % WRAP).encode("ascii")


def decode(stored: int) -> int:
    """The signed 64-bit counter a stored unsigned number stands for."""
    number = stored - OFFSET
    return number - WRAP if number > INT64_MAX else number


def stored_form(value: bytes, deadline: int) -> bytes | Item:
    """What to store for serialized ``value`` with deadline flags ``deadline``: integers of
    magnitude below NATIVE become counters; everything else is marked."""
    if INTEGER.fullmatch(value) and -NATIVE < int(value) < NATIVE:
        return Item(encode(int(value)), COUNTER | deadline)
    data = MARK + value
    return Item(data, deadline) if deadline else data


def value_of(item: tuple[bytes, int]) -> bytes:
    """The serialized value a stored item holds."""
    data, flags = item
    if flags & COUNTER:
        return str(decode(int(data))).encode("ascii")
    if not data.startswith(MARK):
        raise SynchroError("memcached holds an item this interface did not write")
    return data[1:]
