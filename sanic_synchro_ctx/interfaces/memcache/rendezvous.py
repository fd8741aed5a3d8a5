"""Which of several memcached servers holds a key: rendezvous (highest random weight) hashing.

memcached servers never talk to each other: spreading keys over several is the client's
job, and every client of the app must pick the same server for a key. Each server scores
each key (a hash of the key mixed with one of the server's address); the highest score
wins. A server's scores do not depend on the other servers, so adding one moves only the
keys it now wins (about 1/N of them) and removing one moves only its own keys. Weights
scale a server's share (score ``weight / -ln(u)``, ``u`` the hash as a fraction in (0, 1)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from hashlib import blake2b
from typing import Any
from zlib import crc32

from ...errors import SynchroValueError

__all__ = ["Rendezvous", "Server", "check_servers"]

#: One server: host, port, weight.
Server = tuple[str, int, float]

_SPAN = float(2**64)
_MASK = 2**64 - 1
#: How many keys' servers :meth:`Rendezvous.pick` remembers (then it starts over).
RECENT_KEYS = 65_536


def check_servers(servers: Any) -> list[Server]:
    """``servers`` as (host, port, weight) triples: each entry ``(host, port)`` or
    ``(host, port, weight)``; SynchroValueError for an empty list, a duplicate, a bad
    host, port or weight."""
    if isinstance(servers, (str, bytes)) or not isinstance(servers, Sequence):
        raise SynchroValueError(
            "servers must be a list of (host, port) or (host, port, weight) tuples"
        )
    if not servers:
        raise SynchroValueError("servers must name at least one memcached server")
    checked: list[Server] = []
    for entry in servers:
        if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence):
            raise SynchroValueError(f"a server is (host, port[, weight]), not {entry!r}")
        if len(entry) not in (2, 3):
            raise SynchroValueError(f"a server is (host, port[, weight]), not {entry!r}")
        host, port = entry[0], entry[1]
        weight = entry[2] if len(entry) == 3 else 1.0
        if not isinstance(host, str) or not host or any(c in host for c in " ,/\r\n"):
            raise SynchroValueError(f"server {entry!r}: the host must be a host name or address")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise SynchroValueError(f"server {entry!r}: the port must be an int in 1..65535")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
            or weight <= 0
        ):
            raise SynchroValueError(f"server {entry!r}: the weight must be a positive number")
        if any((host, port) == (seen[0], seen[1]) for seen in checked):
            raise SynchroValueError(f"server {host}:{port} is named twice")
        checked.append((host, port, float(weight)))
    return checked


class Rendezvous:
    """Picks the server of a key among ``servers`` (the same answer in every process).

    The key is hashed once (CRC-32: fast, and the same everywhere); each server's draw for
    it is that hash combined with the server's own 64-bit seed (from its address) through
    a 64-bit mixer, so that the draws of different servers are independent. Recent keys'
    answers are remembered (a bounded table): applications use a few keys over and over.
    """

    __slots__ = ("_equal", "_nodes", "_recent")

    def __init__(self, servers: Sequence[Server]) -> None:
        self._nodes = [
            (
                int.from_bytes(blake2b(f"{host}:{port}".encode(), digest_size=8).digest(), "big"),
                weight,
            )
            for host, port, weight in servers
        ]
        self._equal = len({weight for _, weight in self._nodes}) == 1
        self._recent: dict[str, int] = {}

    def pick(self, key: str) -> int:
        """The index of the server that holds ``key``."""
        found = self._recent.get(key)
        if found is not None:
            return found
        hashed = crc32(key.encode("utf-8", "surrogatepass"))
        best, best_score = 0, -1.0
        for index, (seed, weight) in enumerate(self._nodes):
            drawn = _mix(hashed ^ seed)
            score = float(drawn) if self._equal else weight / -math.log((drawn + 0.5) / _SPAN)
            if score > best_score:
                best, best_score = index, score
        if len(self._recent) >= RECENT_KEYS:
            self._recent.clear()
        self._recent[key] = best
        return best


def _mix(value: int) -> int:
    """A 64-bit bijection in which every input bit changes about half the output bits (the
    finalizer of SplitMix64)."""
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)
