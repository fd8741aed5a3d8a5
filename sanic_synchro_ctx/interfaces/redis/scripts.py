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

# The server's clock, in milliseconds and in seconds (scripts replicate their effects).
_NOW = """
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
"""

# A missing key counts as 0 and gets the TTL (ARGV[2], ms) in the same step. Answers the
# new value, or false when INCRBY refused (the caller asks GET why): never an error.
# ARGV[2] is the TTL in ms for a key it creates, or "" for none. Refused, it answers "!"
# and the value it found (a string, never an integer): why it refused, read in one step.
INCREMENT_TTL = """
local existed = redis.call('EXISTS', KEYS[1])
local ok, value = pcall(redis.call, 'INCRBY', KEYS[1], ARGV[1])
if not ok then
  return '!' .. (redis.call('GET', KEYS[1]) or '')
end
if existed == 0 and ARGV[2] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""

# Store loss: a Redis that restarted without persistence lost the leases it granted, and
# their holders do not know yet. (A replica promoted by a failover has been up long: this
# does not cover a lease it never received; wait_replicas= makes one receive it.)
# Each acquire says which server the caller last met (its run_id, "" for none); a server
# the caller did not meet, up for less than the lease asked for (+1 s: whole seconds),
# grants nothing yet: every lease the old one granted could still run (a grace period, as
# Chubby's master fail-over does; every holder of one name asks for the same lease). Every
# answer starts with the server's run_id (40 characters), for the caller to remember.
_SERVER = """
local info = redis.call('INFO', 'server')
local run_id = string.match(info, 'run_id:(%w+)')
local function in_grace(known, lease_ms)
  if known == '' or known == run_id then
    return false
  end
  local uptime = tonumber(string.match(info, 'uptime_in_seconds:(%d+)'))
  return uptime * 1000 < tonumber(lease_ms) + 1000
end
"""

# Answers "<run_id>+<fencing token>" when the lock was taken, "<run_id>-<holder's token>"
# when it is held, "<run_id>=" in a grace period. ARGV: owner, lease (ms), how long to keep
# the name's last token (ms), the server the caller last met. The token is the server's
# clock in microseconds, or one more than the name's last token (KEYS[2]) when that is not
# lower: see fencing.py. string.format: Lua would write a number of 16 digits with an
# exponent.
LOCK_ACQUIRE = (
    _SERVER
    + """
if in_grace(ARGV[4], ARGV[2]) then
  return run_id .. '='
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local clock = redis.call('TIME')
  local fence = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
  local last = tonumber(redis.call('GET', KEYS[2]) or '')
  if last and fence <= last then
    fence = last + 1
  end
  fence = string.format('%d', fence)
  redis.call('SET', KEYS[2], fence, 'PX', ARGV[3])
  return run_id .. '+' .. fence
end
return run_id .. '-' .. (redis.call('GET', KEYS[1]) or '')
"""
)

LOCK_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# A sorted set of holders, scored by the end of their lease (ms); the set itself expires
# with the last lease.
# Answers "<run_id>1" when a place was taken, "<run_id>0" when none is free, "<run_id>="
# in a grace period (as LOCK_ACQUIRE's). ARGV: owner, limit, lease (ms), the server last met.
SEMAPHORE_ACQUIRE = (
    _NOW
    + _SERVER
    + """
if in_grace(ARGV[4], ARGV[3]) then
  return run_id .. '='
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return run_id .. '0'
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[3]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.max(1, tonumber(last[2]) - now_ms))
return run_id .. '1'
"""
)

SEMAPHORE_RELEASE = (
    _NOW
    + """
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not deadline then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
if tonumber(deadline) > now_ms then
  return 1
end
return 0
"""
)

# GCRA on the server's clock, as sanic_synchro_ctx.ratelimit.gcra (1e-3: its SLACK): answers
# "<allowed> <remaining> <retry_after> <reset_after>".
RATE_LIMIT = (
    _NOW
    + """
local limit, per, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local interval = per / limit
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local base = math.max(tat, now)
local ahead = base - now + interval * cost
if ahead > per + interval * 1e-3 then
  local free = math.floor((per - (base - now)) / interval + 1e-3)
  free = math.max(0, math.min(free, limit))
  return string.format('0 %d %.6f %.6f', free, ahead - per, base - now)
end
local new_tat = base + interval * cost
redis.call('SET', KEYS[1], string.format('%.6f', new_tat),
           'PX', math.max(1, math.ceil(ahead * 1000)))
local remaining = math.floor((per - ahead) / interval + 1e-3)
remaining = math.max(0, math.min(remaining, limit))
return string.format('1 %d 0 %.6f', remaining, ahead)
"""
)

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
    "lock_extend": LOCK_EXTEND,
    "increment_ttl": INCREMENT_TTL,
    "semaphore_acquire": SEMAPHORE_ACQUIRE,
    "semaphore_release": SEMAPHORE_RELEASE,
    "rate_limit": RATE_LIMIT,
}
