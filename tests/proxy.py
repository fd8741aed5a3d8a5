"""A loopback TCP proxy that the tests turn against the connections passing through it:
delay every chunk, stop forwarding while keeping connections open (half-open: the peer
never hears a thing), or reset every connection at once.

It runs on an event loop of its own in a daemon thread; ``port`` is where clients connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Any

from .ports import free_port


class FaultyProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.delay = 0.0  # seconds added before each chunk is passed on
        self._flowing = asyncio.Event()  # used on the proxy's loop only
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._run, name="faulty-proxy", daemon=True)

    def start(self) -> FaultyProxy:
        self._thread.start()
        self._ready.wait(10)
        assert self._server is not None, "the proxy did not start"
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)
            self._ready.set()

        self._loop.run_until_complete(serve())
        self._loop.run_forever()

    async def _pipe(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        try:
            server_in, server_out = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            client_out.close()
            return
        self._writers.update((client_out, server_out))
        await asyncio.gather(self._copy(client_in, server_out), self._copy(server_in, client_out))
        for writer in (client_out, server_out):
            self._writers.discard(writer)
            writer.close()

    async def _copy(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await source.read(65536):
                await self._flowing.wait()  # half-open: hold the bytes, say nothing
                if self.delay:
                    await asyncio.sleep(self.delay)
                sink.write(chunk)
                await sink.drain()
        with contextlib.suppress(OSError):
            sink.close()

    def hold(self) -> None:
        """Stop passing bytes on, keeping every connection open (until :meth:`release`)."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def reset_all(self) -> None:
        """Reset every connection now (RST, as a crashed peer or a middlebox does)."""

        def reset() -> None:
            for writer in list(self._writers):
                sock: Any = writer.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                writer.transport.abort()
            self._writers.clear()

        self._loop.call_soon_threadsafe(reset)

    def stop(self) -> None:
        def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            self._loop.stop()

        self._loop.call_soon_threadsafe(close)
        self._thread.join(10)
