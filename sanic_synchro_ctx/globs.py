"""Glob patterns for ``scan(match=...)``, matched on keys as the user wrote them.

The syntax is Redis's: ``*`` any run of characters, ``?`` one character, ``[abc]`` one of
a set, ``[a-z]`` a range, ``[^abc]`` or ``[!abc]`` none of a set, and a backslash makes
the next character literal. It is matched by the library on every interface (never sent to
a server as a pattern), so a namespace's own characters never act as glob characters and
every interface agrees on what matches.
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
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        elif char == "\\" and index < size:
            parts.append(re.escape(pattern[index]))
            index += 1
        elif char == "[":
            end = pattern.find(
                "]", index + 1 if pattern[index : index + 1] in ("!", "^") else index
            )
            if end < 0:  # no closing bracket: a literal "["
                parts.append(re.escape(char))
                continue
            body = pattern[index:end]
            index = end + 1
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            members = []
            position = 0
            while position < len(body):
                if body[position] == "\\" and position + 1 < len(body):
                    members.append(re.escape(body[position + 1]))
                    position += 2
                elif position + 2 < len(body) and body[position + 1] == "-":
                    low, high = sorted((body[position], body[position + 2]))
                    members.append(f"{re.escape(low)}-{re.escape(high)}")
                    position += 3
                else:
                    members.append(re.escape(body[position]))
                    position += 1
            if not members:
                parts.append("[^\\s\\S]" if not negate else "[\\s\\S]")
            else:
                parts.append(("[^" if negate else "[") + "".join(members) + "]")
        else:
            parts.append(re.escape(char))
    compiled = re.compile("".join(parts), re.DOTALL)
    return lambda key: compiled.fullmatch(key) is not None
