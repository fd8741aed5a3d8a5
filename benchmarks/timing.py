"""Side-by-side timing: two variants alternate over several rounds; medians, ratios."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata


@dataclass
class Ratio:
    """One comparison: ``ours`` against ``base`` (per-op µs, or requests/s)."""

    group: str
    name: str
    ours: float
    base: float
    unit: str
    target: str | None
    higher_is_better: bool = False
    extra: str = ""
    #: Per-round ratios of variants measured back to back; when given, the ratio is their
    #: median (robust against a machine whose speed drifts between rounds).
    pairs: tuple[float, ...] = ()

    @property
    def ratio(self) -> float:
        if self.pairs:
            return statistics.median(self.pairs)
        return self.ours / self.base

    @property
    def met(self) -> bool | None:
        """Whether the target holds (None: reported, no target)."""
        if self.target is None:
            return None
        op, value = self.target.split(" ")
        limit = float(value.rstrip("x"))
        return self.ratio <= limit if op == "<=" else self.ratio >= limit


async def time_async(call: Callable[[], Awaitable[object]], count: int) -> float:
    """Microseconds per call of ``call()``, awaited ``count`` times in a row."""
    started = time.perf_counter()
    for _ in range(count):
        await call()
    return (time.perf_counter() - started) / count * 1e6


def awaiting(call: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    """A blocking ``call`` as a function returning an awaitable, to time it beside one."""

    async def run() -> object:
        return call()

    return run


async def interleaved_latency(
    ours: Callable[[], Awaitable[object]],
    base: Callable[[], Awaitable[object]],
    *,
    count: int,
) -> tuple[float, float]:
    """Median µs of one call of each, the two taking turns call by call.

    For latency of single operations: consecutive calls of the two variants see the same
    machine, so a speed that drifts over seconds (other tenants, CPU wake-up states) moves
    both alike instead of whichever happened to run during a slow spell. Which of the two
    goes first alternates too.
    """
    await time_async(ours, count // 10 + 1)  # warm up connections and caches
    await time_async(base, count // 10 + 1)
    clock = time.perf_counter
    mine, theirs = [], []
    for i in range(count):
        for call, times in (
            ((ours, mine), (base, theirs)) if i % 2 else ((base, theirs), (ours, mine))
        ):
            started = clock()
            await call()
            times.append(clock() - started)
    return statistics.median(mine) * 1e6, statistics.median(theirs) * 1e6


async def blockwise_latency(
    ours: Callable[[], Awaitable[object]],
    base: Callable[[], Awaitable[object]],
    *,
    count: int,
    rounds: int = 7,
) -> tuple[float, float, tuple[float, ...]]:
    """Median µs per call of each over ``rounds`` rounds of ``count`` calls in a row,
    which of the two goes first alternating; and the per-round ratios.

    For variants far apart in cost (a few µs against a round trip to another process):
    call by call, the slow one's context switches evict the fast one's caches and double
    its time, which no caller making a run of fast calls would see.
    """
    await time_async(ours, count // 10 + 1)
    await time_async(base, count // 10 + 1)
    mine, theirs, pairs = [], [], []
    for i in range(rounds):
        if i % 2:
            a = await time_async(ours, count)
            b = await time_async(base, count)
        else:
            b = await time_async(base, count)
            a = await time_async(ours, count)
        mine.append(a)
        theirs.append(b)
        pairs.append(a / b)
    return statistics.median(mine), statistics.median(theirs), tuple(pairs)


def machine() -> list[str]:
    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    def server(command: list[str]) -> str:
        try:
            return subprocess.run(
                command, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except OSError:
            return "not installed"

    packages = ["sanic", "redis", "hiredis", "asyncio_redis", "aiomcache", "sanic-synchro-ctx"]
    wrk = server(["wrk", "--version"]).splitlines()
    return [
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        f"- Python {sys.version.split()[0]} ({platform.python_implementation()})",
        "- " + ", ".join(f"{name} {version(name)}" for name in packages),
        f"- {server(['redis-server', '--version'])}",
        f"- {server(['memcached', '-V'])}",
        f"- {wrk[0] if wrk else 'wrk: not installed'}",
    ]
