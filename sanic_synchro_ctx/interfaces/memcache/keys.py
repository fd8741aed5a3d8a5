"""Key mapping: every str key to a valid memcached key, injectively.

memcached keys are at most 250 bytes without whitespace or control characters. A key made
only of printable ASCII other than ``#`` that fits is used as it is; any other key becomes
``#`` + base64url(SHA-256(key)). Plain keys never contain ``#``, so no plain key can take
a hashed form. Every data key starts with the namespace's tag and generation (see
:mod:`.generations`); locks and the generation itself have keys of their own.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re

from ..base import LOCK_MARK

__all__ = ["MAX_KEY", "KeyMap", "digest"]

#: memcached's longest key, in bytes.
MAX_KEY = 250
_SAFE_NAMESPACE = re.compile(r"[A-Za-z0-9:%._/-]{1,64}")
_PLAIN = re.compile(r"[\x21-\x22\x24-\x7e]+")  # printable ASCII except '#'


def digest(data: str) -> str:
    raw = hashlib.sha256(data.encode("utf-8", "surrogatepass")).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@functools.lru_cache(maxsize=4096)
def _body(body: str, room: int) -> bytes:
    """How a key is written after its head: as it is when it is plain printable ASCII
    without '#' and fits in ``room`` bytes, else '#' + its digest."""
    if len(body) <= room and _PLAIN.fullmatch(body):
        return body.encode("ascii")
    return ("#" + digest(body)).encode("ascii")


class KeyMap:
    """The memcached keys of one namespace (``head``: what its full keys start with)."""

    __slots__ = ("_cut", "_lock_cut", "generation_key", "tag")

    def __init__(self, head: str) -> None:
        #: The namespace as it starts every memcached key of it: the head itself when it
        #: is short and plain, else a digest of it.
        self.tag = head if _SAFE_NAMESPACE.fullmatch(head) else "#" + digest(head)[:22]
        self._cut = len(head)
        self._lock_cut = len(LOCK_MARK) + len(head)
        #: Where the namespace's generation token is kept.
        self.generation_key = (self.tag + "!gen").encode("ascii")

    @staticmethod
    def _encode(head: str, body: str) -> bytes:
        return head.encode("ascii") + _body(body, MAX_KEY - len(head))

    def data_key(self, full: str, generation: bytes) -> bytes:
        """The memcached key of full key ``full`` in ``generation``."""
        return self._encode(self.tag + generation.decode("ascii") + ":", full[self._cut :])

    def lock_name(self, full: str) -> bytes:
        """The memcached key of lock key ``full`` (locks outlive generations)."""
        return self._encode(self.tag + "!lock:", full[self._lock_cut :])

    def marked_name(self, kind: str, full: str, mark: str) -> bytes:
        """The memcached key of ``full``, a key of ``mark``'s own key space (semaphores,
        rate limits, fencing counters: they outlive generations, as locks do)."""
        return self._encode(self.tag + "!" + kind + ":", full[len(mark) + self._cut :])
