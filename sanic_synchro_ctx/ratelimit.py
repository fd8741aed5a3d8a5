"""Rate limiting: GCRA (the generic cell rate algorithm), one stored timestamp per key.

``limit`` requests per ``per`` seconds, with bursts of up to ``limit``: each request of
``cost`` moves the key's *theoretical arrival time* (TAT) ``cost * per / limit`` seconds
forward; a request is refused when that would put the TAT more than ``per`` seconds ahead
of now. One number per key, stored with an expiry (it is worthless once it lies in the
past), updated in one atomic step by each interface (a Lua script on Redis with the
server's clock, one Store call in the manager, one transaction on LMDB, a gets/cas loop on
memcached).
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

from .errors import SynchroTypeError, SynchroValueError

__all__ = ["MAX_PER_SECOND", "RateLimit", "check_rate", "gcra", "parse_rate"]

#: The part of one interval (per / limit) a decision tolerates: TATs are sums of floats
#: on clocks of ~1.8e9 s, and their last bits round (now + 86400 - 86400 may exceed now).
SLACK = 1e-3
#: The fastest rate a limit may allow: one request per microsecond. TATs are kept on
#: clocks of ~1.8e9 s, whose floats step by ~2.4e-7 s: a shorter interval would not move
#: the TAT at all (no limit), and a limit of 2**63 or more does not fit the integers some
#: backends compute ``remaining`` in. Refused the same way on every interface.
MAX_PER_SECOND = 1_000_000
_UNITS = {"second": 1, "minute": 60, "hour": 3_600, "day": 86_400}
_RATE = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour|day)s?\s*")


class RateLimit(NamedTuple):
    """The answer of ``rate_limit()`` (a named tuple: cheap to make, and what a primitive
    may answer as it is)."""

    #: Whether this request is within the limit (and was counted).
    allowed: bool
    #: Requests of cost 1 still allowed right now.
    remaining: int
    #: Seconds until this request would be allowed (0 when it was).
    retry_after: float
    #: Seconds until the limit is entirely free again.
    reset_after: float


def check_rate(limit: Any, per: Any, cost: Any) -> tuple[int, float, int]:
    """``limit`` and ``cost`` positive ints, ``cost <= limit``; ``per`` positive seconds."""
    for name, value in (("limit", limit), ("cost", cost)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SynchroTypeError(f"{name} must be an int, got {type(value).__name__}")
        if value <= 0:
            raise SynchroValueError(f"{name} must be positive, got {value}")
    if cost > limit:
        raise SynchroValueError(f"cost {cost} is more than the limit {limit}: never allowed")
    if isinstance(per, bool) or not isinstance(per, (int, float)):
        raise SynchroTypeError(f"per must be int or float seconds, got {type(per).__name__}")
    if not 0 < per < 10 * 365 * 86_400 or not math.isfinite(per):
        raise SynchroValueError(f"per must be a positive number of seconds, got {per!r}")
    if limit > per * MAX_PER_SECOND:
        raise SynchroValueError(
            f"a limit of {limit} per {per} s is over {MAX_PER_SECOND:,} per second, "
            "which the clocks limits are kept in cannot tell apart"
        )
    return limit, float(per), cost


def parse_rate(rate: Any) -> tuple[int, float]:
    """``"100/minute"`` (second, minute, hour or day) or ``(100, 60.0)``: (limit, per).
    Anything else is a SynchroValueError."""
    if isinstance(rate, str):
        match = _RATE.fullmatch(rate)
        if match is None:
            raise SynchroValueError(
                f"rate {rate!r} is not 'N/second', 'N/minute', 'N/hour' or 'N/day'"
            )
        limit, per = int(match.group(1)), float(_UNITS[match.group(2)])
    elif isinstance(rate, tuple) and len(rate) == 2:
        limit, per = rate
    else:
        raise SynchroValueError(f"rate must be 'N/unit' or (N, seconds), got {rate!r}")
    try:
        checked_limit, checked_per, _ = check_rate(limit, per, 1)
    except (SynchroTypeError, SynchroValueError) as exc:
        raise SynchroValueError(f"rate {rate!r}: {exc}") from None
    return checked_limit, checked_per


def gcra(
    tat: float | None, now: float, limit: int, per: float, cost: int
) -> tuple[float | None, RateLimit]:
    """One GCRA step: the new TAT to store (None: store nothing) and the answer.

    ``tat`` is the stored TAT (None when missing or expired), ``now`` the clock the TATs
    are kept in (the same one for every caller of a key). Decisions are taken on how far
    ahead of ``now`` the TAT would be, tolerating :data:`SLACK` of an interval: a request
    may pass that much early (a rate at most 0.1 % above the limit), never a whole one.
    """
    interval = per / limit
    base = now if tat is None or tat < now else tat
    ahead = base - now + interval * cost  # how far ahead of now the TAT would be
    if ahead > per + interval * SLACK:
        free = int((per - (base - now)) / interval + SLACK)
        return None, RateLimit(False, max(0, min(free, limit)), ahead - per, base - now)
    remaining = int((per - ahead) / interval + SLACK)
    return base + interval * cost, RateLimit(True, max(0, min(remaining, limit)), 0.0, ahead)
