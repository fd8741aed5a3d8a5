"""The memcached client: aiomcache's, made safe to cancel, and its text protocol.

Everything here speaks memcached's text protocol through aiomcache's connection pool; the
interface decides what to send. ``exchange``/``pipeline`` send several commands in one
write on one connection and read their replies in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

__all__ = [
    "Item",
    "read_replies",
    "Segment",
    "from_item",
    "get_segment",
    "safe_client_class",
    "storage",
    "to_item",
    "unpack",
]


class Item(NamedTuple):
    """A stored value with the flags aiomcache hands over (for flags other than 0)."""

    data: bytes
    flags: int


#: Part of a pipelined exchange: command text, and how many reply lines it gets (None: it is
#: a ``get``, answered by items).
Segment = tuple[bytes, int | None]


_client_class: Any = None


def safe_client_class(module: Any) -> Any:
    """aiomcache's FlagClient, made safe to cancel and safe when the server goes away.

    aiomcache releases a connection to its pool after each call, and closes it only when its
    reader holds an exception, which it sets for an Exception but not for CancelledError
    (aiomcache#489): marking the reader on any interruption makes the pool close that
    connection instead of handing out one with an unread reply. And its reply loop reads
    lines until one ends with CRLF: at end of file ``readline()`` answers ``b""`` at once, for
    ever, and the event loop spins; here end of file is a lost connection. All of the
    client's I/O goes through these two methods.
    """
    global _client_class
    if _client_class is None:
        _check_aiomcache(module)

        class SafeClient(module.FlagClient):  # type: ignore[misc]
            async def _execute_simple_command(self, conn: Any, raw_command: bytes) -> bytes:
                try:
                    conn.writer.write(raw_command)
                    await conn.writer.drain()
                    response = bytearray()
                    while not response.endswith(b"\r\n"):
                        line = await conn.reader.readline()
                        if not line:
                            raise ConnectionResetError("memcached closed the connection")
                        response += line
                except BaseException as exc:
                    abandon(conn, exc)
                    raise
                return bytes(response[:-2])

            async def _multi_get(self, conn: Any, *keys: bytes, with_cas: bool = True) -> Any:
                try:
                    return await super()._multi_get(conn, *keys, with_cas=with_cas)
                except module.exceptions.ClientException as exc:
                    if conn.reader.at_eof():  # aiomcache reports end of file as "get failed"
                        lost = ConnectionResetError("memcached closed the connection")
                        abandon(conn, lost)
                        raise lost from exc
                    raise
                except BaseException as exc:
                    abandon(conn, exc)
                    raise

            async def exchange(
                self, commands: list[bytes], generation_key: bytes
            ) -> tuple[list[bytes], bytes | None]:
                """Send ``commands`` and ``get generation_key`` in one write; answer each
                command's reply line, and the generation token as the server then had it."""
                lines, found = await self.pipeline(
                    [
                        (b"".join(commands), len(commands)),
                        get_segment([generation_key]),
                    ]
                )
                token = found.get(generation_key)
                return lines, None if token is None else token.data

            @module.client.acquire  # type: ignore[untyped-decorator]
            async def pipeline(self, conn: Any, segments: list[Segment]) -> list[Any]:
                """Send the commands of every segment in one write; then read each one's
                replies in order: its reply lines, or for a ``get`` its items by key."""
                try:
                    conn.writer.write(b"".join(text for text, _ in segments))
                    await conn.writer.drain()
                    return await read_replies(
                        conn.reader,
                        [lines for _, lines in segments],
                        module.exceptions.ClientException,
                    )
                except BaseException as exc:
                    abandon(conn, exc)
                    raise

            @module.client.acquire  # type: ignore[untyped-decorator]
            async def gets_many(self, conn: Any, *keys: bytes) -> tuple[dict[bytes, Any], Any]:
                """Values and cas tokens of ``keys`` in one ``gets``."""
                found: tuple[dict[bytes, Any], Any] = await self._multi_get(
                    conn, *keys, with_cas=True
                )
                return found

        _client_class = SafeClient
    return _client_class


def _check_aiomcache(module: Any) -> None:
    """What the client below relies on, checked against aiomcache 0.8.2."""
    flag_client = getattr(module, "FlagClient", None)
    missing = [
        name
        for name in ("_execute_simple_command", "_multi_get", "get", "gets", "cas", "add")
        if not callable(getattr(flag_client, name, None))
    ]
    if not callable(getattr(getattr(module, "client", None), "acquire", None)):
        missing.append("client.acquire")
    if missing:
        raise ImportError(
            f"this aiomcache lacks {', '.join(missing)}: sanic-synchro-ctx's Memcache was "
            "checked against aiomcache 0.8 (see the docs page on other libraries' internals)"
        )


def get_segment(keys: Iterable[bytes]) -> Segment:
    """The part of an exchange that reads ``keys`` (one ``get``, answered by items)."""
    return b"get " + b" ".join(keys) + b"\r\n", None


#: Bytes asked of the stream per read: a reply that fits comes in one read.
_CHUNK = 256 * 1024


async def _more(reader: Any, data: bytes, start: int) -> bytes:
    """What is left of ``data`` from ``start`` on, and the next bytes the server sent."""
    chunk: bytes = await reader.read(_CHUNK)
    if not chunk:
        raise ConnectionResetError("memcached closed the connection")
    return data[start:] + chunk


async def read_replies(
    reader: Any, shapes: Sequence[int | None], unexpected: Callable[[str, bytes], Exception]
) -> list[Any]:
    """The replies of one pipelined write, in order: for a shape ``n``, its ``n`` reply
    lines (without CRLF); for ``None`` (a ``get``), its items by key.

    Reads whatever the server has sent (usually every reply at once) and parses it here:
    a read per line and per value, as aiomcache does, costs an await and a buffer search
    each. Nothing is read beyond the replies asked for: the server sends nothing else on
    a connection, and anything more is ``unexpected`` (the connection is then dropped).
    """
    data = b""
    at = 0  # where the next reply line starts in data
    replies: list[Any] = []
    for shape in shapes:
        if shape is not None:
            lines: list[bytes] = []
            for _ in range(shape):
                end = data.find(b"\r\n", at)
                while end < 0:
                    data, at = await _more(reader, data, at), 0
                    end = data.find(b"\r\n")
                lines.append(data[at:end])
                at = end + 2
            replies.append(lines)
            continue
        found: dict[bytes, Item] = {}
        while True:
            end = data.find(b"\r\n", at)
            while end < 0:
                data, at = await _more(reader, data, at), 0
                end = data.find(b"\r\n")
            line = data[at:end]
            if line == b"END":
                at = end + 2
                break
            head = line.split()
            if len(head) != 4 or head[0] != b"VALUE" or not (head[2] + head[3]).isdigit():
                raise unexpected("unexpected reply", line)
            start = end + 2
            stop = start + int(head[3])
            while len(data) < stop + 2:
                shift = at
                data, at = await _more(reader, data, at), 0
                start, stop = start - shift, stop - shift
            if data[stop : stop + 2] != b"\r\n":
                raise unexpected("value not followed by CRLF", data[start - 2 : stop + 2])
            found[head[1]] = Item(data[start:stop], int(head[2]))
            at = stop + 2
        replies.append(found)
    if at != len(data):
        raise unexpected("more data than the replies asked for", data[at : at + 80])
    return replies


def storage(
    verb: bytes, key: bytes, stored: bytes | Item, exptime: int, cas: int | None = None
) -> bytes:
    """A storage command (set, add, cas) for memcached's text protocol."""
    data, flags = (stored.data, stored.flags) if isinstance(stored, Item) else (stored, 0)
    head = b"%s %s %d %d %d" % (verb, key, flags, exptime, len(data))
    if cas is not None:
        head += b" %d" % cas
    return head + b"\r\n" + data + b"\r\n"


def abandon(conn: Any, exc: BaseException) -> None:
    """Make aiomcache's pool close this connection when it is released."""
    if conn.reader.exception() is None:
        conn.reader.set_exception(ConnectionAbortedError("memcached call interrupted"))


async def to_item(data: bytes, flags: int) -> Item:
    """aiomcache's flag handler on reads: keep the flags with the data."""
    return Item(data, flags)


async def from_item(item: Item) -> tuple[bytes, int]:
    """aiomcache's flag handler on writes."""
    return item.data, item.flags


def unpack(raw: bytes | Item | None) -> tuple[bytes, int] | None:
    """(data, flags) of what aiomcache returned for a key, or None."""
    if raw is None:
        return None
    if isinstance(raw, Item):
        return raw.data, raw.flags
    return raw, 0
