"""Linearizability under faults: histories recorded by clients in three processes (async
tasks and a blocking thread each) on every interface, with faults injected, checked against
the sequential model (tests/linearizability.py); and the checker's own proof that it fails:
histories of deliberately broken variants, each reported with its minimal sub-history.

``make soak`` runs the same histories longer (SYNCHRO_SOAK_OPS operations per client).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from sanic_synchro_ctx.context import SynchroContext
from sanic_synchro_ctx.interfaces.memory import InMemory

from .backends import RedisServer, frozen
from .histories import (
    LIMIT,
    LOCK,
    SEMAPHORE,
    Recorder,
    attach,
    read,
    read_holds,
    run_clients,
    run_holders,
)
from .linearizability import MISSING, Hold, Op, check, linearizable, overlaps, tokens_out_of_order
from .proxy import FaultyProxy
from .servers import wait_for

#: Operations per client of a default run (SYNCHRO_SOAK_OPS for `make soak`).
SOAK = os.environ.get("SYNCHRO_SOAK_OPS")
pytestmark = pytest.mark.timeout(3_600 if SOAK else 300)

REPO = Path(__file__).resolve().parent.parent
OPS = int(SOAK or 60)
#: Holdings per client (each waits its turn on one lock).
HOLD_OPS = int(SOAK or 120) // 4
PROCESSES = 3
TASKS = 3
#: Each interface's bound on a wait (the stall lasts longer).
TIMEOUT = 1.0
STALL = 1.6
#: Mean seconds between two operations of a client: a run lasts about a second.
PAUSE = 0.01


# -- the checker proves it can fail ---------------------------------------------------------------


def op(client: str, name: str, args: tuple[Any, ...], output: Any, start: float, end: float) -> Op:
    return Op(client, "k", name, args, output, start, end)


def unknown(client: str, name: str, args: tuple[Any, ...], start: float) -> Op:
    return Op(client, "k", name, args, None, start, float("inf"), known=False)


def test_a_sequential_history_is_linearizable() -> None:
    history = [
        op("a", "get", (), MISSING, 0, 1),
        op("a", "increment", (2,), 2, 2, 3),
        op("b", "increment", (1,), 3, 4, 5),
        op("b", "get", (), 3, 6, 7),
    ]
    assert linearizable(history)
    assert not linearizable([*history, op("c", "get", (), 2, 8, 9)])  # a stale read


def test_overlapping_operations_may_take_effect_in_either_order() -> None:
    history = [
        op("a", "increment", (1,), 2, 0, 10),
        op("b", "increment", (1,), 1, 1, 9),  # inside a's interval: it may come first
    ]
    assert linearizable(history)


def test_an_unanswered_operation_may_have_happened_once_or_not_at_all() -> None:
    timed_out = unknown("a", "increment", (1,), 0)
    assert linearizable([timed_out, op("b", "get", (), 1, 5, 6)])
    assert linearizable([timed_out, op("b", "get", (), MISSING, 5, 6)])
    assert not linearizable([timed_out, op("b", "get", (), 2, 5, 6)])  # applied twice


def test_an_increment_resent_after_a_timeout_is_reported_with_its_minimal_history() -> None:
    """A client that sends an increment again after a timeout, and answers the second
    reply: one caller's increment counted twice."""
    history = [
        op("a", "set", (0,), None, 0, 1),
        op("a", "increment", (1,), 2, 2, 4),  # sent, timed out, sent again: answers 2
        op("b", "get", (), 2, 5, 6),
        op("c", "increment", (5,), 7, 7, 8),
        op("c", "get", (), 7, 9, 10),
    ]
    (anomaly,) = check(history)
    assert [(one.client, one.name, one.output) for one in anomaly.witness] == [
        ("a", "increment", 2)
    ]
    assert "not linearizable" in str(anomaly)
    assert "increment(1) -> 2" in str(anomaly)


class StaleReads(InMemory):
    """Broken on purpose: each client process reads its own copy, refreshed only by its own
    writes (a read served from a stale local copy)."""

    def __init__(self, shared: InMemory, **options: Any) -> None:
        super().__init__(**options)
        self.shared = shared

    async def get(self, key: str, default: Any = None) -> Any:
        return await super().get(key, default)

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        await self.shared.set(key, value, ttl=ttl)
        await super().set(key, value, ttl=ttl)


class ResentIncrements(InMemory):
    """Broken on purpose: every third increment "times out" after it took effect and is
    sent again, and the second answer is returned."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.sent = 0

    async def increment(self, key: str, by: int = 1, *, ttl: float | None = None) -> int:
        self.sent += 1
        if self.sent % 3 == 0:
            await super().increment(key, by, ttl=ttl)  # applied; the answer is "lost"
        return await super().increment(key, by, ttl=ttl)


async def _recorded(ctx: SynchroContext, tmp_path: Path, name: str) -> list[Op]:
    recorder = Recorder(tmp_path / f"{name}.jsonl", name)
    try:
        await run_clients(ctx, {"seed": name, "ops": 80, "tasks": 3}, recorder)
    finally:
        recorder.close()
    return read([tmp_path / f"{name}.jsonl"])


async def test_a_resent_increment_is_caught(tmp_path: Path) -> None:
    ctx = SynchroContext(ResentIncrements(prefix="resent:"))
    anomalies = check(await _recorded(ctx, tmp_path, "resent"))
    assert any(anomaly.key.startswith("c") for anomaly in anomalies), anomalies
    for anomaly in anomalies:
        assert any(one.name in ("increment", "decrement") for one in anomaly.witness)


async def test_reads_from_a_stale_local_copy_are_caught(tmp_path: Path) -> None:
    """Two clients, each reading its own copy and writing to both: a client does not see
    the other's writes."""
    shared = InMemory(prefix="stale:")
    first = SynchroContext(StaleReads(shared, prefix="stale:"))
    second = SynchroContext(StaleReads(shared, prefix="stale:"))
    histories = await asyncio.gather(
        _recorded(first, tmp_path, "first"), _recorded(second, tmp_path, "second")
    )
    anomalies = check([*histories[0], *histories[1]])
    assert any(anomaly.key.startswith("r") for anomaly in anomalies), anomalies
    assert all(len(anomaly.witness) <= 12 for anomaly in anomalies)


def test_two_holders_of_one_lock_and_tokens_going_back_are_caught() -> None:
    """A lock that does not check its owner admits two holders at once; tokens restarted
    at 1 after a store restart go back."""
    holds = [
        Hold("a", "job", 0.0, 1.0, token=5),
        Hold("b", "job", 0.5, 1.5, token=6),  # taken while a held it
        Hold("c", "job", 2.0, 3.0, token=1),  # a token from a restarted counter
    ]
    assert overlaps(holds, slack=0.01) == [[holds[0], holds[1]]]
    assert overlaps(holds[1:], slack=0.01) == []
    assert tokens_out_of_order(holds) == [(holds[1], holds[2])]
    assert overlaps(holds, limit=2, slack=0.01) == []  # a semaphore of two admits both


# -- every interface, every fault that applies -----------------------------------------------

#: Where each fault applies. A stall freezes the backend's process (SIGSTOP) for longer than
#: the timeout; a cancellation ends async operations after 0 to 2 ms (interfaces whose
#: operations never suspend cannot be cancelled mid-way); a client process killed with
#: SIGKILL leaves its operations in flight unanswered; a Redis that writes every write
#: through to its append-only file is killed with SIGKILL and started again; a proxy
#: between the clients and the backend delays every chunk, then passes nothing while
#: keeping connections open (half-open) for longer than the timeout, then resets them all.
NEMESES = {
    "none": [
        "inmemory",
        "syncmanager",
        "aioredis",
        "aioredis-cluster",
        "asyncio_redis",
        "memcache",
        "lmdb",
    ],
    "stall": ["syncmanager", "aioredis", "asyncio_redis", "memcache"],
    "cancel": ["syncmanager", "aioredis", "aioredis-cluster", "asyncio_redis", "memcache"],
    "kill-client": [
        "syncmanager",
        "aioredis",
        "aioredis-cluster",
        "asyncio_redis",
        "memcache",
        "lmdb",
    ],
    "restart": ["aioredis", "asyncio_redis"],
    "proxy": ["aioredis", "asyncio_redis", "memcache"],
}
RUNS = [(kind, nemesis) for nemesis, kinds in NEMESES.items() for kind in kinds]


@dataclass
class Target:
    """What the clients reach (``url``), and the faults the test can apply to it."""

    url: str
    pid: int | None = None  # the backend's process, to freeze
    server: RedisServer | None = None  # a private server, to kill and start again
    proxy: FaultyProxy | None = None  # what the clients connect through


def backend_of(kind: str, request: pytest.FixtureRequest, tmp_path: Path, nemesis: str) -> Target:
    """``kind`` on the session's servers, each wait bounded by TIMEOUT; for a restart, on a
    private Redis that writes every write through to its append-only file."""
    bound = f"timeout={TIMEOUT:g}"
    if nemesis == "proxy":
        direct = backend_of(kind, request, tmp_path, "none")
        place = urlsplit(direct.url)
        assert place.port is not None
        proxy = FaultyProxy(place.port).start()
        request.addfinalizer(proxy.stop)
        url = urlunsplit((place.scheme, f"127.0.0.1:{proxy.port}", place.path, place.query, ""))
        return Target(url, proxy=proxy)
    if nemesis == "restart":
        server = RedisServer(tmp_path / "redis", durable=True)
        server.directory.mkdir()
        request.addfinalizer(server.stop)
        server.start()
        scheme = "redis" if kind == "aioredis" else "asyncio-redis"
        return Target(f"{scheme}://127.0.0.1:{server.port}/0?{bound}", server=server)
    if kind == "syncmanager":
        manager = request.getfixturevalue("manager_process")
        keyfile = tmp_path / "authkey"
        keyfile.write_bytes(manager.authkey)
        keyfile.chmod(0o600)
        return Target(f"manager://{manager.address}?authkey_file={keyfile}&{bound}", manager.pid)
    if kind in ("aioredis", "asyncio_redis"):
        server = request.getfixturevalue("redis_server")
        scheme = "redis" if kind == "aioredis" else "asyncio-redis"
        return Target(f"{scheme}://127.0.0.1:{server.port}/0?{bound}", server.process.pid)
    if kind == "aioredis-cluster":
        node = request.getfixturevalue("redis_cluster").nodes[0]
        return Target(f"redis+cluster://127.0.0.1:{node.port}?{bound}")
    if kind == "memcache":
        server = request.getfixturevalue("memcached_server")
        return Target(f"memcached://127.0.0.1:{server.port}?{bound}", server.process.pid)
    if kind == "lmdb":
        return Target(f"lmdb://{tmp_path / 'store'}")
    raise ValueError(f"no URL for {kind!r}")


def _events(paths: list[Path]) -> int:
    return sum(path.read_text().count("\n") for path in paths if path.exists())


def record_processes(
    target: Target, tmp_path: Path, nemesis: str, seed: int, mode: str = "ops"
) -> list[Path]:
    """Where PROCESSES client processes on ``url`` under ``nemesis`` recorded their events
    (``mode``: "ops" on keys, or "holds" of a lock and a semaphore)."""
    outs = [tmp_path / f"client{number}.jsonl" for number in range(PROCESSES)]
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    processes = []
    for number, out in enumerate(outs):
        spec = {
            "url": target.url,
            "prefix": f"lin{seed}:",
            "seed": f"{seed}:{number}",
            "ops": OPS if mode == "ops" else HOLD_OPS,
            "tasks": TASKS,
            "cancel": 0.2 if nemesis == "cancel" else 0.0,
            "pause": PAUSE,
            "out": str(out),
            "client": f"p{number}",
            "mode": mode,
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.histories", json.dumps(spec)],
                cwd=REPO,
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        if nemesis in ("stall", "proxy", "restart"):
            wait_for(lambda: _events(outs) >= 60, what="clients under way")
        if nemesis == "stall":
            assert target.pid is not None
            with frozen(target.pid):
                time.sleep(STALL)  # the fault itself: a backend frozen past the timeout
        elif nemesis == "proxy":
            proxy = target.proxy
            assert proxy is not None
            # the faults themselves, each for a set time: slow, then silent, then reset
            proxy.delay = 0.05
            time.sleep(0.5)
            proxy.delay = 0.0
            proxy.hold()
            time.sleep(STALL)
            proxy.release()
            proxy.reset_all()
        elif nemesis == "restart":
            assert target.server is not None
            target.server.kill()  # kill -9: what it acknowledged is in its append-only file
            target.server.start()
        elif nemesis == "kill-client":
            wait_for(lambda: _events(outs[:1]) >= 60, what="the first client under way")
            processes[0].kill()
        errors = [process.communicate(timeout=240)[1] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for number, process in enumerate(processes):
        killed = nemesis == "kill-client" and number == 0
        assert process.returncode == (-signal.SIGKILL if killed else 0), errors[number]
    return outs


@pytest.mark.parametrize(("kind", "nemesis"), RUNS, ids=[f"{k}-{n}" for k, n in RUNS])
async def test_histories_are_linearizable(
    request: pytest.FixtureRequest, tmp_path: Path, rng: Any, kind: str, nemesis: str
) -> None:
    """Three processes of four clients (three async tasks, one blocking thread) on two
    registers and two counters: every answer explained by one order of the operations
    that respects real time; an unanswered one happened once or not at all."""
    seed = rng.getrandbits(32)
    if kind == "inmemory":  # one process: its clients are tasks and a thread
        ctx = attach("memory://", f"lin{seed}:")
        recorder = Recorder(tmp_path / "inmemory.jsonl", "p0")
        try:
            await run_clients(ctx, {"seed": seed, "ops": OPS * PROCESSES, "tasks": TASKS}, recorder)
        finally:
            recorder.close()
        history = read([tmp_path / "inmemory.jsonl"])
    else:
        target = backend_of(kind, request, tmp_path, nemesis)
        outs = await asyncio.to_thread(record_processes, target, tmp_path, nemesis, seed)
        history = read(outs)
    if nemesis in ("stall", "cancel", "restart", "proxy"):
        unanswered = sum(not one.known for one in history)
        assert unanswered > 0, "the fault left no operation unanswered: it was not exercised"
    if nemesis == "kill-client":
        made = sum(one.client == "p0" for one in history)
        assert made < (TASKS + 1) * OPS, "the client was killed after it had finished"
    anomalies = await asyncio.to_thread(check, history)
    assert anomalies == [], "\n".join(str(anomaly) for anomaly in anomalies)
    assert len(history) >= (PROCESSES if kind != "inmemory" else 1) * OPS


#: The holdings runs: every interface under each fault but cancellation (whose cancelled
#: acquires are the async front end's own tests').
HOLDS = [(kind, nemesis) for kind, nemesis in RUNS if nemesis != "cancel"]


async def _holds_in_process(ctx: SynchroContext, tmp_path: Path, seed: object) -> list[Hold]:
    recorder = Recorder(tmp_path / "holds.jsonl", "p0")
    spec = {"seed": seed, "ops": HOLD_OPS, "tasks": TASKS, "pause": PAUSE}
    try:
        await run_holders(ctx, spec, recorder)
    finally:
        recorder.close()
    return read_holds([tmp_path / "holds.jsonl"])


class OwnerlessLocks(InMemory):
    """Broken on purpose: every acquirer is the same owner, so a held lock or place is
    granted again (a lock that does not check its owner)."""

    async def acquire_lock(self, name: str, owner: str, ttl: float) -> tuple[str | None, int]:
        return await super().acquire_lock(name, "everyone", ttl)

    async def release_lock(self, name: str, owner: str) -> bool:
        await super().release_lock(name, "everyone")
        return True

    async def acquire_semaphore(self, name: str, owner: str, limit: int, ttl: float) -> bool:
        return await super().acquire_semaphore(name, "everyone", 1, ttl)

    async def release_semaphore(self, name: str, owner: str) -> bool:
        await super().release_semaphore(name, "everyone")
        return True


async def test_a_lock_that_does_not_check_its_owner_is_caught(tmp_path: Path) -> None:
    holds = await _holds_in_process(SynchroContext(OwnerlessLocks(prefix="own:")), tmp_path, 1)
    assert overlaps([hold for hold in holds if hold.name == LOCK]) != []


@pytest.mark.parametrize(("kind", "nemesis"), HOLDS, ids=[f"{k}-{n}" for k, n in HOLDS])
async def test_locks_and_semaphores_never_admit_too_many(
    request: pytest.FixtureRequest, tmp_path: Path, rng: Any, kind: str, nemesis: str
) -> None:
    """Three processes of four clients taking turns on one lock and one semaphore of two
    places: never two holders of the lock, never three of the semaphore, and the lock's
    fencing tokens grow in the order it was taken."""
    seed = rng.getrandbits(32)
    if kind == "inmemory":
        holds = await _holds_in_process(attach("memory://", f"hold{seed}:"), tmp_path, seed)
    else:
        target = backend_of(kind, request, tmp_path, nemesis)
        outs = await asyncio.to_thread(record_processes, target, tmp_path, nemesis, seed, "holds")
        holds = read_holds(outs)
    locks = [hold for hold in holds if hold.name == LOCK]
    places = [hold for hold in holds if hold.name == SEMAPHORE]
    assert len(locks) > HOLD_OPS // 2
    assert len(places) > HOLD_OPS // 2
    assert overlaps(locks) == []
    assert overlaps(places, limit=LIMIT) == []
    assert tokens_out_of_order(locks) == []
