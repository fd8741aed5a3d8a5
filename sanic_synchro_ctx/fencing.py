"""Fencing tokens: from the store's clock, so that they never go backwards, and bounded.

A lock's fencing token is the microsecond of the store's clock at which it was taken (Unix
time), or one more than the last token given when that one is not lower (two acquisitions
within one microsecond, or a clock a little behind another's). Where the store lives in
one process (the embedded manager, InMemory) the last token is one number for every name;
Redis, LMDB and memcached keep a name's last token :data:`FENCE_MEMORY` seconds after it
was given, never longer: 50,000 lock names taken once leave nothing behind a minute later.
A store that lost everything (the embedded manager restarted, a Redis without persistence
restarted, a memcached that evicted the record) starts again from its clock, above every
token it gave before, as does a new app on the same store. Assumed, and stated in the
docs: the clock the tokens come from (the Redis server's; the machine's for the embedded
manager, LMDB and InMemory; each client machine's for memcached, which has no clock to
ask) does not step back by more than :data:`FENCE_MEMORY` seconds, and no name is taken
more than a million times a second.
"""

from __future__ import annotations

__all__ = ["FENCE_MEMORY", "next_fence"]

#: Seconds a name's last fencing token is kept after its acquisition.
FENCE_MEMORY = 60.0


def next_fence(now: float, last: int | None) -> int:
    """The token of an acquisition at ``now`` (Unix seconds) after ``last`` (None: none kept)."""
    token = int(now * 1_000_000)
    return token if last is None or token > last else last + 1
