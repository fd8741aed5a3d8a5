"""The manager's wire protocol: framed messages and a mutual HMAC handshake.

A message is a 4-byte big-endian length and a pickle. Pickles are only ever read from a
peer that proved it knows the authkey, so only processes trusted with the key can make the
other side unpickle anything (as with multiprocessing's managers).

Handshake, on a new connection (each step one message)::

    manager -> client   MAGIC + manager nonce (32 bytes)
    client  -> manager  HMAC-SHA256(key, manager nonce) + client nonce + mode (1 byte)
    manager -> client   b"OK" + HMAC-SHA256(key, client nonce) + the store's instance id
                        (or b"NO" and the connection closes: authentication failed)

The client checks the manager's answer too, so neither side talks to an impostor. The
mode says how the connection is served: :data:`BLOCKING` (one request at a time, by a
thread of its own), :data:`PIPELINED` (requests back to back, all such connections
served by one thread) or :data:`SUBSCRIBER` (one request, ``("subscribe", (channels,))``,
answered ``(True, None)`` once the subscription is live; from then on the manager pushes
``(channel, data, dropped)`` for each message published on those channels, see
:mod:`.push`). The instance id is new for every manager process: a client that
reconnects to an id it did not know before is talking to a new, empty store.

After the handshake, a request is ``(method, args)`` and its answer ``(True, result)`` or
``(False, exception)``, in order.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import socket
import struct
from typing import Any

from ...errors import SynchroConnectionError, SynchroError

__all__ = [
    "BLOCKING",
    "PIPELINED",
    "READ_SIZE",
    "SUBSCRIBER",
    "Address",
    "AuthenticationFailed",
    "accept",
    "answer",
    "connect",
    "format_address",
    "frame",
    "read_message",
    "result_of",
    "take_messages",
]

Address = str | tuple[str, int]

BLOCKING = b"B"
PIPELINED = b"P"
SUBSCRIBER = b"S"
MAGIC = b"sanic-synchro-ctx/2\n"
_NONCE = 32
_DIGEST = 32
#: Bytes asked of each read. recv() allocates this much first: above malloc's mmap
#: threshold (128 KiB) every read maps and unmaps memory (a 256 KiB read of a few hundred
#: bytes took 18 µs here, a 64 KiB one 4 µs).
READ_SIZE = 65_536
_HEADER = struct.Struct("!I")
_MAX_MESSAGE = 0xFFFFFFFF


class AuthenticationFailed(SynchroConnectionError):
    """The manager was reached, and refused the authkey (or was not a manager at all)."""


def frame(obj: Any) -> bytes:
    """``obj`` pickled and framed, ready to send."""
    payload = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    if len(payload) > _MAX_MESSAGE:
        raise SynchroError(f"message of {len(payload)} bytes is too large to send")
    return _HEADER.pack(len(payload)) + payload


def _frame_bytes(data: bytes) -> bytes:
    return _HEADER.pack(len(data)) + data


def take_messages(buffer: bytearray, *, raw: bool = False, limit: int | None = None) -> list[Any]:
    """The complete messages at the front of ``buffer`` (at most ``limit``), removed from it
    (unpickled unless ``raw``). An incomplete message stays for the next read; if one fails
    to unpickle, the ones before it are removed and the error propagates."""
    messages: list[Any] = []
    start = 0
    available = len(buffer)
    try:
        with memoryview(buffer) as view:
            while available - start >= 4 and (limit is None or len(messages) < limit):
                (size,) = _HEADER.unpack_from(buffer, start)
                end = start + 4 + size
                if available < end:
                    break
                with view[start + 4 : end] as body:  # released before the buffer shrinks
                    messages.append(bytes(body) if raw else pickle.loads(body))
                start = end
    finally:
        del buffer[:start]
    return messages


def read_message(sock: socket.socket, buffer: bytearray, *, raw: bool = False) -> Any:
    """The next message from blocking ``sock`` (EOFError when the peer closed; a socket
    timeout raises from recv)."""
    while True:
        messages = take_messages(buffer, raw=raw, limit=1)
        if messages:
            return messages[0]
        data = sock.recv(READ_SIZE)
        if not data:
            raise EOFError("the manager closed the connection")
        buffer += data


def result_of(message: Any) -> Any:
    """The result an answer carries, or raise the exception it reports."""
    ok, value = message
    if ok:
        return value
    if isinstance(value, BaseException):
        raise value
    raise SynchroError(f"the manager failed: {value}")


def answer(function: Any, args: tuple[Any, ...]) -> bytes:
    """The framed answer to one request: the function's result or its exception."""
    try:
        message: tuple[bool, Any] = (True, function(*args))
    except Exception as exc:
        message = (False, exc)
    try:
        return frame(message)
    except Exception as exc:  # a result or exception that does not pickle
        return frame((False, SynchroError(f"the manager could not send its answer: {exc}")))


def _mac(key: bytes, nonce: bytes) -> bytes:
    return hmac.new(key, nonce, hashlib.sha256).digest()


def connect(
    address: Address, authkey: bytes, mode: bytes, timeout: float | None
) -> tuple[socket.socket, str]:
    """A new authenticated connection to the manager at ``address``, and the instance id
    of its store. Connecting and the handshake together are bounded by ``timeout``.

    ConnectionError/OSError when it cannot be reached; AuthenticationFailed when it was
    reached and refused the key; TimeoutError when it did not answer in time.
    """
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    if isinstance(address, tuple) and ":" in address[0]:
        family = socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
        buffer = bytearray()
        hello = read_message(sock, buffer, raw=True)
        if not hello.startswith(MAGIC) or len(hello) != len(MAGIC) + _NONCE:
            raise AuthenticationFailed(f"{format_address(address)} is not a synchro manager")
        mine = os.urandom(_NONCE)
        sock.sendall(_frame_bytes(_mac(authkey, hello[len(MAGIC) :]) + mine + mode))
        try:
            reply = read_message(sock, buffer, raw=True)
        except EOFError:
            reply = b"NO"
        if reply[:2] != b"OK" or not hmac.compare_digest(
            reply[2 : 2 + _DIGEST], _mac(authkey, mine)
        ):
            raise AuthenticationFailed(
                f"authentication failed: the manager at {format_address(address)} refused "
                "the authkey (a different key, or a key file read with its newline?)"
            )
        instance = reply[2 + _DIGEST :].decode("ascii")
        sock.settimeout(None)
        return sock, instance
    except BaseException:
        sock.close()
        raise


def accept(sock: socket.socket, authkey: bytes, instance: str) -> bytes | None:
    """The manager's side of the handshake on a new connection; the mode the client asked
    for, or None if it failed to authenticate (the connection is then closed)."""
    try:
        nonce = os.urandom(_NONCE)
        sock.sendall(_frame_bytes(MAGIC + nonce))
        buffer = bytearray()
        reply = read_message(sock, buffer, raw=True)
        mac, theirs, mode = reply[:_DIGEST], reply[_DIGEST:-1], reply[-1:]
        if (
            len(theirs) != _NONCE
            or mode not in (BLOCKING, PIPELINED, SUBSCRIBER)
            or not hmac.compare_digest(mac, _mac(authkey, nonce))
        ):
            sock.sendall(_frame_bytes(b"NO"))
            sock.close()
            return None
        sock.sendall(_frame_bytes(b"OK" + _mac(authkey, theirs) + instance.encode("ascii")))
        return bytes(mode)
    except (OSError, EOFError, ValueError):
        sock.close()
        return None


def format_address(address: Address) -> str:
    if isinstance(address, tuple):
        host, port = address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return address
