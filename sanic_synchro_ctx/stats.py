"""Operation statistics: what :meth:`BaseSynchroInterface.stats` reports, kept per process.

Every public operation of an interface tells its :class:`Recorder` when it ended, with the
time it started: a count, the error's class when it failed, and its latency into a ring of
the last :data:`WINDOW` latencies of that operation, from which ``stats()`` computes p50
and p99. Recording is a clock read, two dict lookups and a list store: cheap enough to stay
on (``make bench`` measures it). Counts are this process's own, since it started (each
worker has its own; the Inspector adds them up).
"""

from __future__ import annotations

from collections import Counter
from math import ceil
from time import perf_counter
from typing import Any

__all__ = ["WINDOW", "NullRecorder", "Recorder"]

#: How many recent latencies of one operation the percentiles are computed over.
WINDOW = 1024
_MASK = WINDOW - 1


class _Operation:
    __slots__ = ("calls", "errors", "latencies")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.latencies: list[float] = []


class Recorder:
    """Counts, errors and recent latencies of one interface's operations in this process."""

    __slots__ = ("_errors", "_operations")

    def __init__(self) -> None:
        self._operations: dict[str, _Operation] = {}
        self._errors: Counter[str] = Counter()

    def done(self, name: str, started: float) -> None:
        """Operation ``name``, started at ``started`` (``perf_counter()``), succeeded."""
        elapsed = perf_counter() - started
        operation = self._operations.get(name)
        if operation is None:  # its first call (setdefault: another thread may race here)
            operation = self._operations.setdefault(name, _Operation())
        calls = operation.calls
        operation.calls = calls + 1
        latencies = operation.latencies
        if calls < WINDOW:
            latencies.append(elapsed)
        else:
            latencies[calls & _MASK] = elapsed

    def failed(self, name: str, started: float, error: BaseException) -> None:
        """Operation ``name`` raised ``error`` (counted as a call and as an error)."""
        self.done(name, started)
        self._operations[name].errors += 1
        self._errors[type(error).__name__] += 1

    def summary(self) -> dict[str, Any]:
        """``{"operations": {name: {calls, errors, p50_ms, p99_ms}}, "errors": {class: n}}``."""
        operations: dict[str, Any] = {}
        for name, operation in sorted(self._operations.items()):
            latencies = sorted(operation.latencies)
            operations[name] = {
                "calls": operation.calls,
                "errors": operation.errors,
                "p50_ms": _rank(latencies, 0.50),
                "p99_ms": _rank(latencies, 0.99),
            }
        return {"operations": operations, "errors": dict(sorted(self._errors.items()))}

    def reset(self) -> None:
        self._operations = {}
        self._errors = Counter()


class NullRecorder(Recorder):
    """Records nothing (an interface whose statistics are switched off)."""

    __slots__ = ()

    def done(self, name: str, started: float) -> None:
        return None

    def failed(self, name: str, started: float, error: BaseException) -> None:
        return None


def _rank(ordered: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of ``ordered`` latencies, in milliseconds (None: none)."""
    if not ordered:
        return None
    return round(ordered[max(0, ceil(fraction * len(ordered)) - 1)] * 1000.0, 4)
