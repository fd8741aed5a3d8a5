"""Which of several memcached servers holds a key: rendezvous (highest random weight) hashing.

memcached servers never talk to each other: spreading keys over several is the client's
job, and every client of the app must pick the same server for a key. Each server scores
each key with a hash keyed by the server's own address; the highest score wins. A server's
scores do not depend on the other servers, so adding one moves only the keys it now wins
(about 1/N of them) and removing one moves only its own keys. Weights scale a server's
share (score ``weight / -ln(u)``, ``u`` the hash as a fraction in (0, 1)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from hashlib import blake2b
from typing import Any

from ...errors import SynchroValueError

__all__ = ["Rendezvous", "Server", "check_servers"]

#: One server: host, port, weight.
Server = tuple[str, int, float]

_SPAN = float(2**64)


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
    """Picks the server of a key among ``servers`` (the same answer in every process)."""

    __slots__ = ("_nodes",)

    def __init__(self, servers: Sequence[Server]) -> None:
        # the hash of each server is keyed by its address alone (blake2b keys: <= 64 bytes)
        self._nodes = [
            (blake2b(f"{host}:{port}".encode(), digest_size=32).digest(), weight)
            for host, port, weight in servers
        ]

    def pick(self, key: str) -> int:
        """The index of the server that holds ``key``."""
        data = key.encode("utf-8", "surrogatepass")
        best, best_score = 0, -1.0
        for index, (seed, weight) in enumerate(self._nodes):
            drawn = int.from_bytes(blake2b(data, digest_size=8, key=seed).digest(), "big")
            score = weight / -math.log((drawn + 0.5) / _SPAN)
            if score > best_score:
                best, best_score = index, score
        return best
