"""Real backend servers for the tests, on free loopback ports, stopped afterwards.

A missing server binary fails the run (``make test`` installs them); it is never a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .ports import PortTaken, free_port, lost_port, start_moving


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} is not installed: run `make test`, which installs it")
    return path


def _answers(port: int, command: bytes, expect: bytes) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(command)
            return expect in sock.recv(4096)
    except OSError:
        return False


def _own_pid(port: int, command: bytes, field: bytes) -> int | None:
    """The process id the server on ``port`` reports after ``field`` (None: no answer)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(command)
            reply = b""
            while field not in reply or b"\r\n" not in reply.split(field, 1)[1]:
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                reply += chunk
    except OSError:
        return None
    return int(reply.split(field, 1)[1].split(b"\r\n", 1)[0])


def _wait_own(
    process: subprocess.Popen[bytes],
    port: int,
    command: bytes,
    field: bytes,
    what: str,
    server: RedisServer | MemcachedServer,
) -> None:
    """Wait until ``process`` itself answers on ``port``: a server that lost its port to
    another one (which would answer in its place) exits, and that fails the start, or moves
    a server whose port was chosen for it (PortTaken)."""

    def answering() -> bool:
        if process.poll() is not None:
            process.wait()
            if lost_port(server.movable, port):
                raise PortTaken(f"{what}: port {port} taken")
            raise RuntimeError(f"{what} on {port} exited with {process.returncode}")
        return _own_pid(port, command, field) == process.pid

    _wait(answering, f"{what} on {port}")


def _wait(check: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)


def wait_stopped(pid: int) -> None:
    """Return once process ``pid`` is stopped (SIGSTOP is delivered asynchronously)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as handle:
            if handle.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} was not stopped")


@contextlib.contextmanager
def frozen(pid: int, watchdog: float = 20.0) -> Iterator[threading.Event]:
    """SIGSTOP process ``pid`` for the block; a watchdog thaws it after ``watchdog`` s (so
    a call that waits for the thaw ends, and the test can see that it waited: the event)."""
    thawed = threading.Event()

    def thaw_later() -> None:
        if not thawed.wait(watchdog):
            os.kill(pid, signal.SIGCONT)
            thawed.set()

    os.kill(pid, signal.SIGSTOP)
    wait_stopped(pid)
    threading.Thread(target=thaw_later, daemon=True).start()
    try:
        yield thawed
    finally:
        if not thawed.is_set():
            thawed.set()
            os.kill(pid, signal.SIGCONT)


class RedisServer:
    """One ``redis-server``, without persistence unless ``durable`` (an append-only file
    written through on every write: ``appendfsync always``); can be killed and started
    again."""

    def __init__(
        self,
        directory: Path,
        *,
        cluster: bool = False,
        port: int | None = None,
        durable: bool = False,
    ) -> None:
        self.port = port or free_port(with_bus=True)
        #: A port chosen here and never served on may be taken before the server binds it
        #: (another test run on this machine): the first start then moves to another one.
        self.movable = port is None
        self.directory = directory
        self.cluster = cluster
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, replica_of: int | None = None) -> RedisServer:
        return start_moving(lambda: self._start(replica_of), self._move)

    def _move(self) -> None:
        self.port = free_port(with_bus=True)

    def _start(self, replica_of: int | None) -> RedisServer:
        command = [
            require("redis-server"),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.durable else "no",
            "--appendfsync", "always",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / f"redis-{self.port}.log"),
        ]  # fmt: skip
        command += ["--repl-diskless-sync-delay", "0"]  # a replica syncs at once
        if replica_of is not None:
            command += ["--replicaof", "127.0.0.1", str(replica_of)]
        if self.cluster:
            command += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(self.directory / f"nodes-{self.port}.conf"),
                "--cluster-node-timeout", "5000",
            ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        _wait_own(self.process, self.port, b"INFO server\r\n", b"process_id:", "redis", self)
        self.movable = False
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class RedisCluster:
    """Three cluster-enabled ``redis-server``s joined by ``redis-cli --cluster create``."""

    def __init__(self, directory: Path) -> None:
        self.nodes = [RedisServer(directory, cluster=True) for _ in range(3)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [
                require("redis-cli"),
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for node in self.nodes:
            _wait(
                lambda port=node.port: _answers(port, b"CLUSTER INFO\r\n", b"cluster_state:ok"),
                f"cluster state ok on {node.port}",
            )
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class RedisSentinels:
    """A master, one replica and three ``redis-server --sentinel`` watching them (service
    ``main``; quorum 2; a master is down after 1 s without answers)."""

    SERVICE = "main"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.master = RedisServer(directory)
        self.replica = RedisServer(directory)
        self.sentinel_ports = [free_port(with_bus=True) for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.sentinel_ports]

    @property
    def url(self) -> str:
        places = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{places}/{self.SERVICE}/0"

    def start(self) -> RedisSentinels:
        try:
            return self._start()
        except BaseException:
            self.stop()  # what started so far
            raise

    def _start(self) -> RedisSentinels:
        self.master.start()
        self.replica.start(replica_of=self.master.port)
        _wait(
            lambda: _answers(self.master.port, b"INFO replication\r\n", b"state=online"),
            "the replica in sync",
        )
        for port in self.sentinel_ports:
            config = self.directory / f"sentinel-{port}.conf"
            config.write_text(
                f"port {port}\n"
                "bind 127.0.0.1\n"
                f"dir {self.directory}\n"
                f"logfile {self.directory / f'sentinel-{port}.log'}\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
                f"sentinel failover-timeout {self.SERVICE} 10000\n"
                f"sentinel parallel-syncs {self.SERVICE} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [require("redis-server"), str(config), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stdin=subprocess.DEVNULL,
                )
            )
        for port in self.sentinel_ports:
            _wait(
                lambda port=port: _answers(port, b"SENTINEL REPLICAS main\r\n", b"*1\r\n"),
                f"sentinel on {port} seeing the replica",
            )
        return self

    def master_port(self) -> int:
        """The port of the master the Sentinels name now."""
        with socket.create_connection(("127.0.0.1", self.sentinel_ports[0]), timeout=5) as sock:
            sock.sendall(b"SENTINEL GET-MASTER-ADDR-BY-NAME main\r\n")
            reply = sock.recv(4096).split(b"\r\n")
        return int(reply[4])

    def stop(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.replica.stop()
        self.master.stop()


class MemcachedServer:
    """One ``memcached`` on a free loopback port; can be killed and started again."""

    def __init__(self, *, port: int | None = None) -> None:
        self.port = port or free_port(with_bus=True)
        self.movable = port is None  # see RedisServer
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> MemcachedServer:
        return start_moving(self._start, self._move)

    def _move(self) -> None:
        self.port = free_port(with_bus=True)

    def _start(self) -> MemcachedServer:
        command = [require("memcached"), "-l", "127.0.0.1", "-p", str(self.port), "-U", "0"]
        command += ["-m", "64", "-u", "root"] if os.getuid() == 0 else ["-m", "64"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL
        )
        _wait_own(self.process, self.port, b"stats\r\n", b"STAT pid ", "memcached", self)
        self.movable = False
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
