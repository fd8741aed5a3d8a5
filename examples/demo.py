"""`make demo`: start examples/counter.py with 4 workers, send 1,000 requests, print the count.

Uses only the standard library. Exits non-zero unless the final count is exactly 1000.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
REQUESTS = 1_000
WORKERS = 4
CONCURRENCY = 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode()
        if response.status != 200:
            raise RuntimeError(f"GET {path} -> {response.status}: {body}")
        return body
    finally:
        conn.close()


def wait_until_serving(port: int, server: subprocess.Popen[bytes], limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited early with code {server.returncode}")
        try:
            get(port, "/count")
            return
        except (OSError, RuntimeError):
            time.sleep(0.1)
    raise SystemExit(f"the server did not answer within {limit} s")


def stop(server: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a user stops it. Sanic's main process does not act on a SIGINT that
    arrives while it still waits for its workers to report ready (sanic-org/sanic#2997),
    which a fast demo can hit; a second one stops it, as Sanic documents for Ctrl-C."""
    for grace in (5, 20):
        server.send_signal(signal.SIGINT)
        try:
            server.wait(grace)
            return
        except subprocess.TimeoutExpired:
            pass
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def main() -> int:
    port = free_port()
    env = dict(os.environ, PORT=str(port), WORKERS=str(WORKERS))
    print(f"starting examples/counter.py with {WORKERS} workers on 127.0.0.1:{port}")
    server = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "counter.py")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a forced stop kills the server's process group, not ours
    )
    try:
        wait_until_serving(port, server)
        started = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(lambda _: get(port, "/inc"), range(REQUESTS)))
        elapsed = time.perf_counter() - started
        final = int(get(port, "/count"))
    finally:
        stop(server)
    print(f"sent {REQUESTS} requests to /inc in {elapsed:.2f} s ({REQUESTS / elapsed:.0f} req/s)")
    print(f"final count: {final}")
    if final != REQUESTS:
        print(f"expected exactly {REQUESTS}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
