"""multiprocessing.connection's message framing, for sockets read and written without blocking.

A message is a signed 32-bit big-endian length (or -1 and a 64-bit length for larger ones)
followed by the pickled object: what ``Connection.send``/``recv`` read and write, so a
socket framed here talks to a multiprocessing ``Connection`` at the other end.
"""

from __future__ import annotations

import pickle
import socket
import struct
from typing import Any

__all__ = ["READ_SIZE", "frame", "receive", "take_messages"]

#: Bytes asked of each read. recv() allocates this much first: above malloc's mmap
#: threshold (128 KiB) every read maps and unmaps memory (a 256 KiB read of a few hundred
#: bytes took 18 µs here, a 64 KiB one 4 µs).
READ_SIZE = 65_536

_SHORT = struct.Struct("!i")
_LONG = struct.Struct("!Q")


def frame(obj: Any) -> bytes:
    """``obj`` pickled and framed, ready to send."""
    payload = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    size = len(payload)
    if size <= 0x7FFFFFFF:
        return _SHORT.pack(size) + payload
    return _SHORT.pack(-1) + _LONG.pack(size) + payload


def take_messages(buffer: bytearray) -> list[Any]:
    """Unpickle every complete message at the front of ``buffer`` and remove them from it.

    An incomplete message stays in the buffer for the next read. If a message fails to
    unpickle, the ones before it are removed and the error propagates.
    """
    messages: list[Any] = []
    start = 0
    available = len(buffer)
    try:
        with memoryview(buffer) as view:
            while available - start >= 4:
                (size,) = _SHORT.unpack_from(buffer, start)
                body = start + 4
                if size == -1:
                    if available - start < 12:
                        break
                    (size,) = _LONG.unpack_from(buffer, start + 4)
                    body = start + 12
                end = body + size
                if available < end:
                    break
                messages.append(pickle.loads(view[body:end]))
                start = end
    finally:
        del buffer[:start]
    return messages


def receive(sock: socket.socket, buffer: bytearray) -> list[Any] | None:
    """Read what the non-blocking ``sock`` has into ``buffer``: the complete messages now
    taken from it (maybe none), or None when the other end closed the connection.

    OSError when the connection broke; an unpickling error as :func:`take_messages`.
    """
    try:
        data = sock.recv(READ_SIZE)
    except (BlockingIOError, InterruptedError):
        return []
    if not data:
        return None
    buffer += data
    return take_messages(buffer)
