"""What one process says about one interface: the report behind ``sanic inspect synchro``.

Each worker of an app served with :class:`~sanic_synchro_ctx.SynchroInspector` writes one
report per Synchro into its own entry of Sanic's worker state, every
``SYNCHRO_REPORT_INTERVAL`` seconds: the interface, where its backend is (no secrets),
whether the worker reached it and how long a read took, how many keys the namespace holds
(counted up to :data:`MAX_COUNTED_KEYS`, so that a large namespace costs a bounded scan),
and :meth:`~sanic_synchro_ctx.BaseSynchroInterface.stats`. :func:`add_up` sums the
workers' reports for the Inspector.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import SynchroError

if TYPE_CHECKING:
    from .interfaces.base import BaseSynchroInterface

__all__ = ["MAX_COUNTED_KEYS", "add_up", "report"]

#: A report counts the namespace's keys up to this many (then says "at least").
MAX_COUNTED_KEYS = 10_000
#: Keys per page while counting.
_PAGE = 1_000


async def report(interface: BaseSynchroInterface) -> dict[str, Any]:
    """This process's report on ``interface`` (JSON-ready; never raises a SynchroError)."""
    answer: dict[str, Any] = {
        "interface": type(interface).__name__,
        "endpoint": interface.endpoint,
        "namespace": interface.prefix,
        "at": time.time(),
    }
    try:
        answer["ping_ms"] = round(await interface.ping() * 1000.0, 3)
        answer["reachable"] = True
    except SynchroError as exc:
        answer.update(reachable=False, ping_ms=None, error=f"{type(exc).__name__}: {exc}")
    answer["keys"] = answer["keys_at_least"] = None
    if answer["reachable"] and interface.lists_keys:
        try:
            counted, more = await _count_keys(interface)
        except SynchroError as exc:
            answer["error"] = f"{type(exc).__name__}: {exc}"
        else:
            answer["keys" if not more else "keys_at_least"] = counted
    answer["stats"] = interface.stats()
    return answer


async def _count_keys(interface: BaseSynchroInterface) -> tuple[int, bool]:
    """(keys counted, whether there are more than :data:`MAX_COUNTED_KEYS`). Pages through
    the primitive, so that the report's own reads never show in the statistics."""
    prefix = interface.prefix or ""
    cut = len(prefix)
    counted, cursor = 0, None
    while True:
        try:
            cursor, keys = await interface.raw_scan(prefix, cursor, _PAGE)
        except SynchroError:
            raise
        except Exception as exc:
            raise interface.map_error(exc) from exc
        counted += sum(1 for key in keys if len(key) > cut)
        if cursor is None:
            return counted, False
        if counted >= MAX_COUNTED_KEYS:
            return counted, True


def add_up(reports: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The statistics of several processes' reports on one Synchro, summed: calls and
    errors per operation, errors per class, round trips (latencies are per process)."""
    calls: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    round_trips: int | None = None
    for one in reports:
        stats = one.get("stats") or {}
        for name, operation in (stats.get("operations") or {}).items():
            calls[name] += operation.get("calls", 0)
            failures[name] += operation.get("errors", 0)
        errors.update(stats.get("errors") or {})
        if stats.get("round_trips") is not None:
            round_trips = (round_trips or 0) + stats["round_trips"]
    return {
        "operations": {
            name: {"calls": calls[name], "errors": failures[name]} for name in sorted(calls)
        },
        "errors": dict(sorted(errors.items())),
        "round_trips": round_trips,
    }
