"""HTTP benchmarks: real `sanic --workers 2` servers under wrk load on loopback.

Both servers of a comparison run at once and take the load in alternation, many short
rounds each; the table reports median requests/s and median p99 latency, and the ratio is
the median of the per-round ratios (each round loads both servers back to back, so a
machine whose speed drifts over the run moves both sides of a round together). Which
server goes first alternates from round to round, so neither always runs right after the
other one's load.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .timing import Ratio

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, app: str, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        command = [sys.executable, "-m", "sanic", app, "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--workers", "2", "--no-access-logs", "--no-motd"]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a forced stop kills its process group, not ours
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"{app} did not start: see {log}") from None
                time.sleep(0.2)
        time.sleep(1.0)  # let every worker finish starting before measuring

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wrk(port: int, seconds: int, connections: int) -> tuple[float, float]:
    """(requests/s, p99 latency in ms) for GET /inc."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency",
         f"http://127.0.0.1:{port}/inc"],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return rps, p99


def compare(
    name: str, ours: tuple[str, dict[str, str]], base: tuple[str, dict[str, str]],
    target: str, logs: Path, *, rounds: int, seconds: int, connections: int = 64,
) -> Ratio:  # fmt: skip
    a = Server(ours[0], ours[1], logs / "ours.log")
    b = Server(base[0], base[1], logs / "base.log")
    try:
        mine: list[tuple[float, float]] = []
        theirs: list[tuple[float, float]] = []
        for i in range(rounds):
            turns = ((b, theirs), (a, mine)) if i % 2 else ((a, mine), (b, theirs))
            for server, results in turns:
                results.append(wrk(server.port, seconds, connections))
    finally:
        a.stop()
        b.stop()
    rps_ours = statistics.median(r for r, _ in mine)
    rps_base = statistics.median(r for r, _ in theirs)
    p99 = (statistics.median(p for _, p in mine), statistics.median(p for _, p in theirs))
    pairs = tuple(a[0] / b[0] for a, b in zip(mine, theirs, strict=True))
    return Ratio(
        "HTTP /inc, sanic --workers 2, wrk -c64 (requests/s)",
        name, rps_ours, rps_base, "req/s", target, higher_is_better=True,
        extra=f"p99 {p99[0]:.1f} ms vs {p99[1]:.1f} ms; per-round ratios "
        + " ".join(f"{pair:.2f}" for pair in pairs),
        pairs=pairs,
    )  # fmt: skip


def main(redis_url: str, logs: Path, quick: bool) -> list[Ratio]:
    rounds, seconds = (2, 1) if quick else (20, 2)
    return [
        compare(
            "SyncManager vs multiprocessing.Value + lock in shared_ctx",
            ("benchmarks.apps.synchro_counter:app", {}),
            ("benchmarks.apps.value_counter:app", {}),
            ">= 1.0x", logs, rounds=rounds, seconds=seconds,
        ),
        compare(
            "AIORedis vs raw redis.asyncio INCR",
            ("benchmarks.apps.synchro_counter:app", {"BENCH_REDIS_URL": redis_url}),
            ("benchmarks.apps.redis_counter:app", {"BENCH_REDIS_URL": redis_url}),
            ">= 1.5x", logs, rounds=rounds, seconds=seconds,
        ),
        compare(
            "SyncManager, statistics on (default) vs off",
            ("benchmarks.apps.synchro_counter:app", {}),
            ("benchmarks.apps.synchro_counter:app", {"BENCH_STATS": "0"}),
            ">= 0.97x", logs, rounds=rounds, seconds=seconds,
        ),
    ]  # fmt: skip
