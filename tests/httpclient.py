"""A small HTTP/1.1 client for the tests' real servers, cheap on the CPU.

The multi-worker tests send tens of thousands of requests to servers on this 2-core
machine, where the client competes with the server for the same cores: httpx spent 5.8 ms
of CPU per request of a 2,000-request burst (11.6 s), and builds an SSL context for every
``httpx.get``. This client speaks just what those servers answer (a status line, headers,
a Content-Length or chunked body) over plain sockets: the standard library's http.client for
one request, asyncio streams for bursts on kept-alive or fresh connections.
"""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class TransportError(OSError):
    """No complete answer: refused, reset, closed early, timed out or malformed."""


class Headers(Mapping[str, str]):
    """Response headers, looked up case-insensitively (the last of repeated ones wins)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._items = {name.lower(): value for name, value in pairs}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Any:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class Response:
    status_code: int
    headers: Headers
    content: bytes = field(repr=False)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> Response:
        if self.status_code >= 400:
            raise AssertionError(f"HTTP {self.status_code}: {self.text[:500]}")
        return self


def request(
    port: int,
    path: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    timeout: float = 30.0,
) -> Response:
    """One request on a new connection to 127.0.0.1:``port`` (closed afterwards)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    sent = {"Connection": "close", **(headers or {})}
    body = None
    if json_body is not None:
        body = json.dumps(json_body).encode()
        sent["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=body, headers=sent)
        answer = connection.getresponse()
        return Response(answer.status, Headers(answer.getheaders()), answer.read())
    except (OSError, http.client.HTTPException) as exc:
        raise TransportError(f"{method} {path}: {exc!r}") from exc
    finally:
        connection.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[Response, bool]:
    """One response from ``reader``; and whether the server keeps the connection open."""
    status_line = await reader.readline()
    if not status_line:
        raise TransportError("connection closed before a response")
    parts = status_line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise TransportError(f"not an HTTP response: {status_line!r}")
    pairs = []
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        pairs.append((name.strip(), value.strip()))
    headers = Headers(pairs)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while size := int((await reader.readline()).split(b";")[0], 16):
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass  # trailers
        body = b"".join(chunks)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
        return Response(int(parts[1]), headers, body), False
    keep = headers.get("connection", "").lower() != "close" and parts[0] == "HTTP/1.1"
    return Response(int(parts[1]), headers, body), keep


def _encode(path: str, close: bool) -> bytes:
    close_header = "Connection: close\r\n" if close else ""
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{close_header}\r\n".encode("latin-1")


async def burst(
    port: int,
    paths: list[str],
    concurrency: int,
    *,
    fresh: bool = False,
    timeout: float = 60.0,
    answered: Callable[[int], None] | None = None,
) -> list[Response | TransportError]:
    """GET every path, at most ``concurrency`` in flight, each on a connection kept alive
    for the next (``fresh``: a new connection per request, so that the kernel may hand each
    to any worker). Results in the order of ``paths``; a request that got no complete answer
    gives its TransportError in its place (it is not resent: it may have run).
    ``answered(n)`` is called with the number of responses so far after each one."""
    results: list[Response | TransportError | None] = [None] * len(paths)
    pending = iter(range(len(paths)))
    count = 0

    async def connection_loop() -> None:
        nonlocal count
        streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            for index in pending:
                try:
                    if streams is None:
                        streams = await asyncio.wait_for(
                            asyncio.open_connection("127.0.0.1", port), timeout
                        )
                    reader, writer = streams
                    writer.write(_encode(paths[index], fresh))
                    response, keep = await asyncio.wait_for(_read_response(reader), timeout)
                    results[index] = response
                    count += 1
                    if answered is not None:
                        answered(count)
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                    keep = False
                    error = exc if isinstance(exc, TransportError) else None
                    results[index] = error or TransportError(f"GET {paths[index]}: {exc!r}")
                if not keep and streams is not None:
                    streams[1].close()
                    streams = None
        finally:
            if streams is not None:
                streams[1].close()

    await asyncio.gather(*(connection_loop() for _ in range(min(concurrency, len(paths)))))
    return [result for result in results if result is not None]
