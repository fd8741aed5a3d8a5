"""Expiry: memcached's, in whole seconds, with the deadline kept in the item's flags.

memcached decides: an item it no longer returns is gone for every operation at once
(``get``, ``incr``, ``add``, ``delete``), so no operation can act on a key another one
reported expired. Its clock counts whole seconds and lags real time by up to one, so the
deadline (the TTL rounded up to a whole second) is kept in the flags (bits 1-31, seconds
since 2020), which is how ``ttl()`` answers, and memcached is asked to remove the item in
the two seconds after it, never before.
"""

from __future__ import annotations

import math
import time

__all__ = ["PAST", "THIRTY_DAYS", "deadline", "exptime", "left"]

_EPOCH = 1_577_836_800  # 2020-01-01
THIRTY_DAYS = 30 * 86_400
#: An exptime that memcached reads as an absolute time in 1970: the item expires at once.
PAST = THIRTY_DAYS + 1


def deadline(ttl: float | None) -> int:
    """Deadline flags for ``ttl``: the time until which the value must live, rounded up to
    a whole second (0: no expiry)."""
    if ttl is None:
        return 0
    return (math.ceil(time.time() + ttl) - _EPOCH) << 1


def exptime(flags: int) -> int:
    """memcached's exptime for deadline flags, such that memcached removes the item in the
    two seconds after the deadline, never before it.

    A relative exptime R removes an item between R - 1 and R seconds after it was written
    (measured: memcached 1.6), so R is one second beyond the deadline. Beyond 30 days an
    exptime is absolute Unix time, read against memcached's own second (up to a second off
    either way): two seconds beyond the deadline."""
    if not flags >> 1:
        return 0
    at = (flags >> 1) + _EPOCH
    relative = math.ceil(at - time.time()) + 1
    return max(relative, 1) if relative <= THIRTY_DAYS else at + 2


def lease(ttl: float) -> int:
    """memcached's exptime for a lock lease of ``ttl`` seconds (never shorter)."""
    return exptime(deadline(ttl))


def left(flags: int) -> float | None:
    """Seconds to live from an item's flags (None: no expiry; 0 once the deadline passed
    and memcached has yet to remove the item)."""
    at = flags >> 1
    return None if at == 0 else max(at + _EPOCH - time.time(), 0.0)
