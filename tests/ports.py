"""Free loopback ports for the servers the tests start, apart for each pytest-xdist worker.

A port found free by binding port 0 may be taken by another test process before the
server binds it. Each xdist worker (PYTEST_XDIST_WORKER, "gw<N>") therefore takes its ports
from a block of its own, below the kernel's ephemeral range (32768 and up, where outgoing
connections take theirs), and a server that still finds its port taken is started again
on another one (see the servers' ``start``).
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Ports of worker N: BASE + N * BLOCK ... + BLOCK; a cluster node's bus port is + BUS.
BASE, BLOCK, BUS, WORKERS = 12_000, 1_000, 10_000, 10


def _worker() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) % WORKERS if name[2:].isdigit() else 0


_offsets = itertools.count()


def bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, with_bus: bool = False) -> int:
    """A loopback port free now, from this worker's block (and its bus port + BUS)."""
    first = BASE + _worker() * BLOCK
    for _ in range(BLOCK):
        port = first + next(_offsets) % BLOCK
        if bindable(port) and (not with_bus or bindable(port + BUS)):
            return port
    raise RuntimeError(f"no free port in {first}-{first + BLOCK - 1}")


class PortTaken(RuntimeError):
    """A server exited at its first start on a port chosen for it, which something else
    holds now: it may move to another one."""


def lost_port(movable: bool, port: int) -> bool:
    """Whether a server that exited at start did so because ``port``, chosen for it
    (``movable``), was taken meanwhile: something else holds it now."""
    return movable and not bindable(port)


def start_moving(start: Callable[[], T], move: Callable[[], None], tries: int = 3) -> T:
    """``start()``; on PortTaken, ``move()`` to another port and start again."""
    for _ in range(tries):
        try:
            return start()
        except PortTaken:
            move()
    return start()
