"""Glob patterns for ``scan(match=...)``, matched on keys as the user wrote them.

The syntax and its corner cases are Redis's (``stringmatchlen`` in its ``util.c``), checked
by a differential test against a real ``SCAN MATCH`` over thousands of generated patterns:
``*`` any run of characters, ``?`` one character, ``[abc]`` one of a set, ``[a-z]`` a range
(``[z-a]`` too), ``[^abc]`` none of a set, and a backslash makes the next character literal,
inside a set too (``[\\]]`` is the set of ``]``). As in Redis, ``!`` does not negate a set;
a ``]`` right after ``[`` closes an empty set (which matches nothing); a set that is never
closed runs to the end of the pattern (``user[12`` is ``user`` then ``1`` or ``2``); a
range may end in ``]`` (``[a-]`` runs to the end of the pattern); a backslash that ends the
pattern is itself. One difference, deliberate: a pattern is matched on characters, where
Redis matches bytes, so ``?`` is one character of a non-ASCII key (Redis: one byte of
its UTF-8).

It is matched by the library on every interface (never sent to a server as a pattern), so a
namespace's own characters never act as glob characters and every interface agrees on what
matches.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .errors import SynchroTypeError

__all__ = ["compile_glob"]


def compile_glob(pattern: object) -> Callable[[str], bool]:
    """A predicate telling whether a key matches glob ``pattern`` (as a whole)."""
    if not isinstance(pattern, str):
        raise SynchroTypeError(f"match must be a str glob pattern, not {type(pattern).__name__}")
    parts: list[str] = []
    index, size = 0, len(pattern)
    while index < size:
        char = pattern[index]
        index += 1
        if char == "*":
            if not parts or parts[-1] != ".*":  # a run of stars is one star
                parts.append(".*")
        elif char == "?":
            parts.append(".")
        elif char == "\\" and index < size:
            parts.append(re.escape(pattern[index]))
            index += 1
        elif char == "[":
            part, index = _character_set(pattern, index)
            parts.append(part)
        else:
            parts.append(re.escape(char))
    compiled = re.compile("".join(parts), re.DOTALL)
    return lambda key: compiled.fullmatch(key) is not None


def _character_set(pattern: str, index: int) -> tuple[str, int]:
    """The regular expression of the set whose ``[`` ends before ``index``, and the index
    after it, read as Redis reads it (the order of the tests below is Redis's)."""
    size = len(pattern)
    negate = pattern[index : index + 1] == "^"
    if negate:
        index += 1
    members: list[str] = []
    while True:
        left = size - index
        if left >= 2 and pattern[index] == "\\":
            members.append(re.escape(pattern[index + 1]))
            index += 2
        elif left == 0:  # never closed: the set ends with the pattern
            break
        elif pattern[index] == "]":
            index += 1
            break
        elif left >= 3 and pattern[index + 1] == "-":
            low, high = sorted((pattern[index], pattern[index + 2]))
            members.append(f"{re.escape(low)}-{re.escape(high)}")
            index += 3
        else:
            members.append(re.escape(pattern[index]))
            index += 1
    if not members:
        return ("[\\s\\S]" if negate else "[^\\s\\S]"), index
    return ("[^" if negate else "[") + "".join(members) + "]", index
