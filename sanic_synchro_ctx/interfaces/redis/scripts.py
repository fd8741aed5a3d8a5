"""What the two Redis interfaces share: key encoding, TTL units and the Lua scripts.

Scripts make one atomic step of a check and a write (Redis runs a script without
interleaving other commands). None of them raises: each answers with a value, because
one of the clients turns every script error into an unrelated exception.
Requires Redis >= 6.2 (``SET ... KEEPTTL``, ``SET ... GET``).
"""

from __future__ import annotations

import math
import re

from ...errors import SynchroError, SynchroTypeError, SynchroValueError

__all__ = [
    "SCRIPTS",
    "decode_key",
    "encode_key",
    "increment_error",
    "match_pattern",
    "milliseconds",
    "seconds_left",
    "split_netstrings",
]

_INTEGER = re.compile(rb"-?(?:0|[1-9][0-9]*)")
_GLOB_SPECIAL = re.compile(rb"([*?\[\]\\])")


def encode_key(key: str) -> bytes:
    """Keys are any str: lone surrogates included, each key to distinct bytes."""
    return key.encode("utf-8", "surrogatepass")


def decode_key(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", "surrogatepass")


def match_pattern(prefix: str) -> bytes:
    """A SCAN MATCH pattern for every key that starts with ``prefix`` (glob chars escaped)."""
    return _GLOB_SPECIAL.sub(rb"\\\1", encode_key(prefix)) + b"*"


def milliseconds(ttl: float) -> int:
    """TTL seconds to whole milliseconds, rounded up (a TTL never expires early)."""
    return max(1, math.ceil(ttl * 1000))


def seconds_left(pttl: int) -> float | None:
    """PTTL's answer in seconds; None for no expiry (-1) or no key (-2)."""
    return None if pttl < 0 else pttl / 1000


def split_netstrings(data: bytes) -> list[bytes]:
    """The values ADD_MANY answers with."""
    values = []
    start = 0
    while start < len(data):
        colon = data.index(b":", start)
        end = colon + 1 + int(data[start:colon])
        values.append(data[colon + 1 : end])
        start = end
    return values


def increment_error(current: bytes | str | None) -> SynchroError:
    """Why INCRBY refused: the value is not an integer, or the result would overflow."""
    if isinstance(current, str):
        current = current.encode("utf-8", "surrogatepass")
    if current is not None and _INTEGER.fullmatch(current):
        return SynchroValueError("the result leaves the signed 64-bit range")
    return SynchroTypeError("the stored value is not an integer")


# ARGV[1] is the TTL in milliseconds, or "" for no expiry.
SET_MANY = """
local px = ARGV[1]
for i, key in ipairs(KEYS) do
  if px == '' then
    redis.call('SET', key, ARGV[i + 1])
  else
    redis.call('SET', key, ARGV[i + 1], 'PX', px)
  end
end
return #KEYS
"""

# Answers the value each key now holds, as netstrings ("<length>:<bytes>" each): one
# binary-safe string, which every client returns as it is.
ADD_MANY = """
local px = ARGV[1]
local stored = {}
for i, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if not value then
    value = ARGV[i + 1]
    if px == '' then
      redis.call('SET', key, value)
    else
      redis.call('SET', key, value, 'PX', px)
    end
  end
  stored[i] = #value .. ':' .. value
end
return table.concat(stored)
"""

COMPARE_AND_SET = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
"""

REPLACE = """
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
return old
"""

PERSIST = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('PERSIST', KEYS[1])
return 1
"""

# Answers false (nil) when the lock was taken, else the holder's token.
LOCK_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return false
end
return redis.call('GET', KEYS[1])
"""

LOCK_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

SCRIPTS = {
    "set_many": SET_MANY,
    "add_many": ADD_MANY,
    "compare_and_set": COMPARE_AND_SET,
    "replace": REPLACE,
    "persist": PERSIST,
    "lock_acquire": LOCK_ACQUIRE,
    "lock_release": LOCK_RELEASE,
}
