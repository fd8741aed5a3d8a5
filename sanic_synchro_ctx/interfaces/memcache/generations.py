"""Generations: ``clear()`` without ``flush_all``, and the exchanges that carry them.

``clear()`` must not ``flush_all`` a server others may share. Every data key includes the
namespace's generation, a random token stored under the namespace's generation key, and
``clear()`` replaces the token: the old generation's keys become unreachable and age out.
A random token (never a counter) means an evicted generation key can never bring old data
back. Every exchange reads the token with the data (reads: in the same multi-get; writes:
a ``get`` of it sent after the commands, in the same write), and is sent again on the new
generation when a clear moved it: a write whose exchange saw the generation unchanged
landed before any clear.

Under load (see :mod:`~sanic_synchro_ctx.batching`) the reads and writes waiting for the
next round trip go out in one exchange on one connection, in order: each run of reads
merged into one multi-get, each write as its commands, and one read of the generation for
the whole batch.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

from ...batching import Outcome
from .client import Segment, get_segment, unpack
from .keys import KeyMap

__all__ = ["Generation", "Op", "Read", "Write"]

T = TypeVar("T")
Items = list[tuple[bytes, int] | None]


class Read(NamedTuple):
    """Read these keys (full names), with the generation."""

    keys: tuple[str, ...]


class Write(NamedTuple):
    """Send the commands built for a generation; their reply lines, one each."""

    build: Callable[[bytes], list[bytes]]


Op = Read | Write


class Generation:
    """A namespace's generation on one memcached server, and the exchanges that read it.

    ``bound(awaitable)`` bounds one exchange with the server (the interface's timeout).
    """

    def __init__(self, keys: KeyMap, bound: Callable[[Awaitable[Any]], Awaitable[Any]]) -> None:
        self.keys = keys
        #: The token last seen (None before the first exchange).
        self.token: bytes | None = None
        self._bound = bound

    async def current(self, client: Any, seen: bytes | None = None) -> bytes:
        """The token: ``seen`` if given (as just read), else read; created if missing
        (never set, or evicted: a fresh token then hides the old data for good)."""
        key = self.keys.generation_key
        token = seen if seen is not None else await self._bound(client.get(key))
        while token is None:
            fresh = secrets.token_hex(8).encode("ascii")
            if await self._bound(client.add(key, fresh)):
                token = fresh
            else:
                token = await self._bound(client.get(key))
        self.token = token
        return token

    async def renew(self, client: Any) -> None:
        """Move to a new generation: every key of the old one is unreachable from now on."""
        fresh = secrets.token_hex(8).encode("ascii")
        await self._bound(client.set(self.keys.generation_key, fresh))
        self.token = fresh

    def send_one(self, client: Any, op: Op) -> Awaitable[Any]:
        if isinstance(op, Read):
            return self.read(client, op.keys)
        return self.write(client, op.build)

    async def read(self, client: Any, keys: tuple[str, ...]) -> Items:
        """Data items of ``keys`` in one multi-get, together with the generation token."""
        generation = self.token or await self.current(client)
        generation_key = self.keys.generation_key
        while True:
            names = [self.keys.data_key(key, generation) for key in keys]
            (found,) = await self._bound(client.pipeline([get_segment([generation_key, *names])]))
            token = found.get(generation_key)
            if token is not None and token.data == generation:
                return [unpack(found.get(name)) for name in names]
            generation = await self.current(client, None if token is None else token.data)

    async def write(self, client: Any, build: Callable[[bytes], list[bytes]]) -> list[bytes]:
        """Send ``build(generation)`` (raw commands) together with a read of the generation,
        in one exchange; when a clear had moved the generation, send them again on the new
        one. Answers the commands' reply lines."""
        generation = self.token or await self.current(client)
        while True:
            replies, token = await self._bound(
                client.exchange(build(generation), self.keys.generation_key)
            )
            if token == generation:
                return list(replies)
            generation = await self.current(client, token)

    async def send_many(self, client: Any, ops: list[Op]) -> list[Outcome]:
        """Several operations in one exchange, in order: writes as their commands, runs of
        reads merged into one multi-get, and the generation read last (with the last run of
        reads if the batch ends with one). If a clear moved the generation, all of it is
        sent again on the new one, as for a single operation."""
        generation = self.token or await self.current(client)
        generation_key = self.keys.generation_key
        while True:
            segments: list[Segment] = []
            plan: list[tuple[int, list[bytes]]] = []  # per op: its segment, and its names
            run: dict[bytes, None] | None = None  # names of the get being gathered
            for op in ops:
                if isinstance(op, Read):
                    names = [self.keys.data_key(key, generation) for key in op.keys]
                    if run is None:
                        run = {}
                        segments.append((b"", None))
                    run.update(dict.fromkeys(names))
                    plan.append((len(segments) - 1, names))
                    continue
                if run is not None:
                    segments[-1] = get_segment(run)
                    run = None
                commands = op.build(generation)
                segments.append((b"".join(commands), len(commands)))
                plan.append((len(segments) - 1, []))
            if run is not None:  # the generation goes with the last reads
                segments[-1] = get_segment([generation_key, *run])
            else:
                segments.append(get_segment([generation_key]))
            replies = await self._bound(client.pipeline(segments))
            token = replies[-1].get(generation_key)
            if token is not None:
                token = token.data
            if token != generation:
                generation = await self.current(client, token)
                continue
            outcomes: list[Outcome] = []
            for index, names in plan:
                reply = replies[index]
                if names:
                    outcomes.append((True, [unpack(reply.get(name)) for name in names]))
                else:
                    outcomes.append((True, reply))
            return outcomes
