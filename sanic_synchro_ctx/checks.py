"""Argument checks shared by every interface, run before anything is sent or written."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import SynchroTypeError, SynchroValueError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_KEY_LENGTH",
    "MAX_TTL",
    "check_key",
    "check_keys",
    "check_lease",
    "check_mapping",
    "check_step",
    "check_timeout",
    "check_ttl",
]

#: Longest key accepted, in characters. Long keys work everywhere; this only stops mistakes.
MAX_KEY_LENGTH = 65_536
#: Longest TTL accepted, in seconds (ten years).
MAX_TTL = 10 * 365 * 86_400
#: Counters are signed 64-bit integers on every interface (the range Redis INCRBY allows).
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def _brief(number: float) -> str:
    """A number for an error message (an int of thousands of digits is not printed whole)."""
    if isinstance(number, int) and abs(number) >= 10**24:
        return f"an int of {number.bit_length()} bits"
    return repr(number)


def check_key(key: Any, what: str = "key") -> str:
    """A key is a non-empty ``str`` of at most :data:`MAX_KEY_LENGTH` characters."""
    if not isinstance(key, str):
        raise SynchroTypeError(f"{what} must be str, got {type(key).__name__}")
    if not key:
        raise SynchroValueError(f"{what} must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise SynchroValueError(
            f"{what} is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}"
        )
    return key


def check_keys(keys: Any) -> list[str]:
    """An iterable of keys (a lone ``str`` is refused: it would iterate its characters)."""
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
        raise SynchroTypeError(
            f"keys must be an iterable of str (a list, a set...), got {type(keys).__name__}"
        )
    return [check_key(key) for key in keys]


def check_mapping(mapping: Any) -> Mapping[str, Any]:
    if not isinstance(mapping, Mapping):
        raise SynchroTypeError(f"mapping must be a Mapping, got {type(mapping).__name__}")
    for key in mapping:
        check_key(key)
    return mapping


def check_ttl(ttl: Any) -> float | None:
    """A TTL is a positive, finite number of seconds, or ``None`` for no expiry."""
    return None if ttl is None else check_lease(ttl)


def check_lease(ttl: Any) -> float:
    """A lock lease: like a TTL, but ``None`` is refused (every lock expires)."""
    if ttl is None:
        raise SynchroTypeError("ttl must be a number of seconds, not None")
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise SynchroTypeError(f"ttl must be int or float seconds, got {type(ttl).__name__}")
    if ttl > MAX_TTL:  # compared before any float(): an int may exceed every float
        raise SynchroValueError(
            f"ttl must be at most {MAX_TTL} seconds (ten years), got {_brief(ttl)}"
        )
    if not math.isfinite(ttl) or ttl <= 0:
        raise SynchroValueError(f"ttl must be a positive, finite number of seconds, got {ttl!r}")
    return float(ttl)


def check_timeout(timeout: Any) -> float | None:
    """A lock wait: ``None`` (wait for ever) or a finite number of seconds >= 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise SynchroTypeError(
            f"timeout must be int or float seconds, got {type(timeout).__name__}"
        )
    if timeout > MAX_TTL:  # compared before any float(): an int may exceed every float
        raise SynchroValueError(
            f"timeout must be at most {MAX_TTL} seconds (ten years), got {_brief(timeout)}"
        )
    if not math.isfinite(timeout) or timeout < 0:
        raise SynchroValueError(f"timeout must be a finite number of seconds >= 0, got {timeout!r}")
    return float(timeout)


def check_step(by: Any) -> int:
    """An increment step is an ``int`` (never ``bool``) in the signed 64-bit range."""
    if isinstance(by, bool) or not isinstance(by, int):
        raise SynchroTypeError(f"increment step must be int, got {type(by).__name__}")
    step = int(by)
    if not INT64_MIN <= step <= INT64_MAX:
        raise SynchroValueError(f"increment step {step} is outside the signed 64-bit range")
    return step
