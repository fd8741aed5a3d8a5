"""Histories for the linearizability checker: clients that record what they asked and what
they were answered, in this process or in processes of their own.

A client process is ``python -m tests.histories SPEC`` (SPEC: JSON). It builds the interface
from ``url`` (every interface has one) with ``prefix``, then runs ``tasks`` async clients and
one blocking client (a thread: the blocking front end) until each made ``ops`` operations,
on a few register keys and a few counter keys. Each event is one JSON line appended to
``out``: the invocation before the call leaves, the answer (or its absence) after, so that
a process killed with SIGKILL leaves its unanswered operations recorded as invoked. Times
are ``time.monotonic()``: one clock for every process of the machine.

``pause``: mean seconds a client waits between two operations (so that a run lasts long
enough for a fault to land in it). ``cancel`` > 0 cancels that share of the async
clients' operations after 0 to 2 ms (``asyncio.timeout``): a cancelled operation has no
answer. So has one that raised SynchroConnectionError. Any other exception fails the
client.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sanic_synchro_ctx import SynchroConnectionError, interface_from_url
from sanic_synchro_ctx.context import SynchroContext

from .linearizability import MISSING, Hold, Op

REGISTERS = ["r0", "r1"]
COUNTERS = ["c0", "c1"]
#: What get() returns for a missing key in a recorded history (never a stored value).
ABSENT = "<absent>"


#: Operations of a client on one set of keys before it moves to new ones: each key's
#: history stays short however long a run is (keys are checked one by one, and the
#: search grows with the unanswered operations a key gathers), so a soak scales.
ROUND = 60


def next_operation(rng: random.Random, number: int) -> tuple[str, str, tuple[Any, ...]]:
    """A random operation, the client's ``number``-th: (key, name, arguments)."""
    suffix = f"@{number // ROUND}"
    if rng.random() < 0.5:
        key = rng.choice(REGISTERS) + suffix
        value = rng.randint(1, 5)
        name = rng.choice(
            ["get", "get", "set", "compare_and_set", "setdefault", "replace", "delete"]
        )
        if name == "get" or name == "delete":
            return key, name, ()
        if name == "compare_and_set":
            return key, name, (rng.randint(1, 5), value)
        return key, name, (value,)
    key = rng.choice(COUNTERS) + suffix
    name = rng.choice(["increment", "increment", "decrement", "get", "get", "delete"])
    if name in ("get", "delete"):
        return key, name, ()
    return key, name, (rng.randint(1, 3),)


def _call(front: Any, key: str, name: str, args: tuple[Any, ...]) -> Any:
    if name == "get":
        return front.get(key, ABSENT)
    if name == "delete":
        return front.delete(key)
    return getattr(front, name)(key, *args)


def _answer(name: str, value: Any) -> Any:
    """A recorded answer in the model's terms (MISSING for a missing key's get)."""
    return MISSING if name == "get" and value == ABSENT else value


class Recorder:
    """Appends events to a file, one JSON line each, written through at once."""

    def __init__(self, path: Path, client: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._client = client
        self._lock = threading.Lock()
        self._ids = iter(range(1 << 62))

    def invoke(self, key: str, name: str, args: tuple[Any, ...]) -> str:
        with self._lock:
            ident = f"{self._client}:{next(self._ids)}"
        self._write({"id": ident, "at": time.monotonic(), "key": key, "name": name, "args": args})
        return ident

    def answer(self, ident: str, value: Any) -> None:
        self._write({"id": ident, "at": time.monotonic(), "ok": True, "value": value})

    def no_answer(self, ident: str, why: str) -> None:
        self._write({"id": ident, "at": time.monotonic(), "ok": False, "why": why})

    def hold(self, name: str, start: float, taken: Any) -> None:
        """A holding of ``name`` from ``start`` until now (just before its release)."""
        token = getattr(taken, "token", 0)
        event = {"hold": name, "client": self._client, "start": start, "token": token}
        self._write({**event, "at": time.monotonic()})

    def _write(self, event: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(event) + "\n").encode())

    def close(self) -> None:
        os.close(self._fd)


async def run_clients(ctx: SynchroContext, spec: dict[str, Any], recorder: Recorder) -> None:
    """``spec["tasks"]`` async clients and one blocking client, ``spec["ops"]`` each."""
    seed, ops, cancel = spec["seed"], spec["ops"], spec.get("cancel", 0.0)
    pause = spec.get("pause", 0.0)  # mean seconds between two operations of a client

    async def async_client(number: int) -> None:
        rng = random.Random(f"{seed}:{number}")
        for made in range(ops):
            key, name, args = next_operation(rng, made)
            ident = recorder.invoke(key, name, args)
            try:
                if rng.random() < cancel:
                    async with asyncio.timeout(rng.uniform(0, 0.002)):
                        value = await _call(ctx, key, name, args)
                else:
                    value = await _call(ctx, key, name, args)
            except (SynchroConnectionError, TimeoutError) as exc:
                recorder.no_answer(ident, type(exc).__name__)
            else:
                recorder.answer(ident, _answer(name, value))
            await asyncio.sleep(rng.uniform(0, 2 * pause))

    def blocking_client() -> None:
        rng = random.Random(f"{seed}:blocking")
        front = ctx.sync
        try:
            for made in range(ops):
                key, name, args = next_operation(rng, made)
                ident = recorder.invoke(key, name, args)
                try:
                    value = _call(front, key, name, args)
                except SynchroConnectionError as exc:
                    recorder.no_answer(ident, type(exc).__name__)
                else:
                    recorder.answer(ident, _answer(name, value))
                time.sleep(rng.uniform(0, 2 * pause))
        finally:
            ctx.interface.close_thread()

    await _together(async_client, blocking_client, spec["tasks"])


async def _together(
    async_client: Callable[[int], Awaitable[None]], blocking_client: Callable[[], None], tasks: int
) -> None:
    """``tasks`` async clients on this loop and the blocking one on a thread, to the end."""
    thread = asyncio.get_running_loop().run_in_executor(None, blocking_client)
    await asyncio.gather(*(async_client(number) for number in range(tasks)), thread)


#: The lock and the semaphore (of LIMIT places) the holding clients take turns on.
LOCK, SEMAPHORE, LIMIT = "lock", "pool", 2


def _take(front: Any, rng: random.Random) -> tuple[str, Any]:
    """The lock or a place of the semaphore, at random: (its name, the object to hold)."""
    if rng.random() < 0.5:
        return LOCK, front.lock(LOCK, ttl=5, timeout=10)
    return SEMAPHORE, front.semaphore(SEMAPHORE, LIMIT, ttl=5, timeout=10)


async def run_holders(ctx: SynchroContext, spec: dict[str, Any], recorder: Recorder) -> None:
    """``spec["tasks"]`` async clients and one blocking client, each taking the lock or a
    place of the semaphore ``spec["ops"]`` times and holding it for a moment: each holding
    recorded from when the acquire returned to when the release was sent (inside the
    lease, so that two recorded holdings that overlap are two holders at once)."""
    seed, ops, pause = spec["seed"], spec["ops"], spec.get("pause", 0.0)

    async def async_client(number: int) -> None:
        rng = random.Random(f"{seed}:{number}")
        for _ in range(ops):
            held, taken = _take(ctx, rng)
            try:
                async with taken:
                    start = time.monotonic()
                    await asyncio.sleep(rng.uniform(0, 2 * pause))
                    recorder.hold(held, start, taken)
            except SynchroConnectionError:
                pass  # not taken, or its release unknown: recorded only once held

    def blocking_client() -> None:
        rng = random.Random(f"{seed}:blocking")
        front = ctx.sync
        try:
            for _ in range(ops):
                held, taken = _take(front, rng)
                try:
                    with taken:
                        start = time.monotonic()
                        time.sleep(rng.uniform(0, 2 * pause))
                        recorder.hold(held, start, taken)
                except SynchroConnectionError:
                    pass
        finally:
            ctx.interface.close_thread()

    await _together(async_client, blocking_client, spec["tasks"])


def read_holds(paths: list[Path]) -> list[Hold]:
    """The holdings recorded in ``paths``."""
    holds = []
    for path in paths:
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if "hold" in event:
                token = event["token"]
                holds.append(
                    Hold(event["client"], event["hold"], event["start"], event["at"], token)
                )
    return holds


def read(paths: list[Path]) -> list[Op]:
    """The operations recorded in ``paths``; an invocation with no event after it (its
    process was killed) has no answer."""
    invoked: dict[str, dict[str, Any]] = {}
    ended: dict[str, dict[str, Any]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if "hold" not in event:
                (ended if "ok" in event else invoked)[event["id"]] = event
    history = []
    for ident, call in invoked.items():
        end = ended.get(ident)
        known = end is not None and end["ok"]
        history.append(
            Op(
                client=ident.rsplit(":", 1)[0],
                key=call["key"],
                name=call["name"],
                args=tuple(call["args"]),
                output=end["value"] if known else None,
                invoke=call["at"],
                complete=end["at"] if known else float("inf"),
                known=known,
            )
        )
    return history


def attach(url: str, prefix: str) -> SynchroContext:
    """The context object of ``url``'s interface, attached outside any app."""
    interface = interface_from_url(url, prefix=prefix)
    interface.attach(None)
    return SynchroContext(interface)


def main(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    ctx = attach(spec["url"], spec["prefix"])
    recorder = Recorder(Path(spec["out"]), spec["client"])

    async def run() -> None:
        clients = run_holders if spec.get("mode") == "holds" else run_clients
        try:
            await clients(ctx, spec, recorder)
        finally:
            await ctx.interface.aclose()

    try:
        asyncio.run(run())
    finally:
        recorder.close()


if __name__ == "__main__":
    main(sys.argv)
