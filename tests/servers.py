"""Real Sanic servers in subprocesses, on free loopback ports, with bounded HTTP load."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

from .httpclient import Response, TransportError, burst, request
from .ports import PortTaken, free_port, lost_port, start_moving

REPO = Path(__file__).resolve().parent.parent
APP = "tests.apps.workers_app:app"


def manager_processes_watching(pid: int) -> list[int]:
    """PIDs of manager processes started for (and watching) process ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            b"sanic_synchro_ctx" in argv
            and b"--watch-pid" in argv
            and argv[argv.index(b"--watch-pid") + 1] == str(pid).encode()
        ):
            found.append(int(entry.name))
    return found


#: Every server the tests started: none may be left running (checked at session end).
STARTED: list[SanicServer] = []

#: Sanic's own failures at stop that a test let pass (recognised from the whole log by the
#: two functions below and nothing else): conftest.py reports each with its test and the
#: run ends with one line counting them.
TOLERATED: list[str] = []


def tolerate(what: str) -> None:
    """Let one of Sanic's recognised failures at stop pass, loudly."""
    TOLERATED.append(what.split("\n", 1)[0])
    warnings.warn(what, stacklevel=3)


#: What Sanic's main process logs when a signal starts its shutdown; a second time only if
#: the first shutdown never finished (else it says "Shutdown interrupted. Killing.").
_SHUTDOWN_STARTED = "Received signal SIGINT. Shutting down."

#: How much of a server's log (its end) a failure message shows.
_SHOWN = 6000

#: What Sanic's main process logs when its serve loop ended in an exception.
_SERVE_FAILED = "Experienced exception while trying to serve"

#: Where a reply meant for another call surfaces in Sanic's main process (see below).
_WORKER_STATE_FRAMES = ("WorkerProcess.set_state", "WorkerManager._sync_states")


def sanic_signal_crossed_replies(log: str) -> bool:
    """Whether ``log`` shows Sanic's main process failing its own SIGINT shutdown on a
    reply meant for another call, and nothing of this library in any traceback.

    Sanic (25.12) handles SIGINT in a Python signal handler (WorkerManager.shutdown_signal)
    that calls the multiprocessing proxy ``worker_state`` (WorkerProcess.terminate ->
    set_state) on the connection the interrupted main thread uses too: every 0.1 s
    ``_sync_states`` sends a request on it and waits for the reply. A signal landing between
    that send and that receive makes the handler read the main thread's reply (None, from a
    ``__setitem__``: "TypeError: 'NoneType' object is not a mapping" in set_state) and the
    main thread a later one (``_get_process_states`` then meets a str). Reproduced without
    Sanic or this library: a SIGALRM handler reading a manager dict while the main thread
    reads another key gets the other key's value within a few hundred calls. The server's
    exit code is then 1 although every worker stopped; nothing here can prevent it.
    """
    _, started, after = log.partition(_SHUTDOWN_STARTED)
    return (
        bool(started)
        and _SERVE_FAILED in after
        and any(frame in after for frame in _WORKER_STATE_FRAMES)
        and "sanic_synchro_ctx" not in log
    )


#: Frames of Sanic's main process that call the worker-state proxy from its SIGINT handler
#: or from the monitor loop the handler interrupts (as faulthandler prints them).
_HANDLER_FRAMES = (" in shutdown_signal", " in _sync_states")


def sanic_signal_hung_on_worker_state(log: str) -> bool:
    """Whether ``log`` shows Sanic's main process hung for good after SIGINT, waiting for a
    worker-state proxy reply, with nothing of this library on its stack.

    The other face of the race in :func:`sanic_signal_crossed_replies`: when the signal
    lands while the main thread is part-way through reading a reply, the handler's own
    proxy call reads the rest of it as a new message, and one of the two waits for bytes
    that never come (the reproduction without Sanic hangs this way within a few hundred
    calls). It is judged on the main thread's stack, which :meth:`SanicServer.stop` has the
    hung process write to the log (faulthandler, on SIGABRT) before killing it: after the
    SIGINT line, the "Current thread" block must hold a frame of the handler or of the
    monitor loop, then multiprocessing's ``_callmethod`` (a proxy call waiting for its
    reply), and no frame of ``sanic_synchro_ctx``.
    """
    _, started, after = log.partition(_SHUTDOWN_STARTED)
    _, dumped, stack = after.rpartition("\nCurrent thread ")
    if not (started and dumped):
        return False
    frames = [line for line in stack.split("\n\n")[0].splitlines() if "File " in line]
    return (
        any(name in frame for frame in frames for name in _HANDLER_FRAMES)
        and any(frame.endswith(" in _callmethod") for frame in frames)
        and not any("sanic_synchro_ctx" in frame for frame in frames)
    )


class SanicServer:
    """``python <args>`` serving on 127.0.0.1:<free port>; logs go to ``log_dir``."""

    def __init__(
        self,
        args: list[str],
        log_dir: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path = REPO,
        port: int | None = None,
    ) -> None:
        #: A port chosen here may be taken by another process before the server binds it:
        #: then start() moves to another one.
        self.movable = port is None
        self.template = args
        self.env = {**os.environ, "HOST": "127.0.0.1", **(env or {})}
        self._use_port(port or free_port())
        self.env["PYTHONUNBUFFERED"] = "1"
        # A hung server is made to write every thread's stack to its log before it is
        # killed (SIGABRT, see _kill_hung): the one evidence of where it hung.
        self.env["PYTHONFAULTHANDLER"] = "1"
        self.cwd = cwd
        self.log_path = log_dir / f"server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def _use_port(self, port: int) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.args = [arg.replace("{port}", str(port)) for arg in self.template]
        self.env["PORT"] = str(port)

    @classmethod
    def cli(
        cls, log_dir: Path, *extra: str, app: str = APP, env: dict[str, str] | None = None
    ) -> SanicServer:
        """``python -m sanic <app> --host 127.0.0.1 --port <port> <extra>``."""
        args = ["-m", "sanic", app, "--host", "127.0.0.1", "--port", "{port}", "--no-access-logs"]
        return cls([*args, "--no-motd", *extra], log_dir, env=env)

    @classmethod
    def wrapping(
        cls,
        target: str,
        log_dir: Path,
        *extra: str,
        env: dict[str, str] | None = None,
        cwd: Path = REPO,
    ) -> SanicServer:
        """The app ``target`` ("module:name"), left as it is, served by the Sanic CLI with
        the readiness route added (tests/apps/wrapped.py), so that wait_main_monitoring()
        can tell when a SIGINT is safe."""
        wrapped = {"SYNCHRO_WRAPPED_APP": target, "PYTHONPATH": str(REPO), **(env or {})}
        args = ["-m", "sanic", "tests.apps.wrapped:app", "--host", "127.0.0.1"]
        args += ["--port", "{port}", "--no-access-logs", "--no-motd", *extra]
        return cls(args, log_dir, env=wrapped, cwd=cwd)

    def log(self) -> str:
        """The log's last _SHOWN characters (what a failure message shows)."""
        return self.full_log(missing="<no log>")[-_SHOWN:]

    def full_log(self, missing: str = "") -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return missing

    def library_tracebacks(self) -> list[str]:
        """Every traceback in the whole log that passes through this library's code."""
        text = self.full_log()
        blocks = text.split("Traceback (most recent call last):")[1:]
        return [block[:2000] for block in blocks if "sanic_synchro_ctx" in block]

    def start(self, timeout: float = 60.0, ready: str = "/pid") -> SanicServer:
        if self.process is not None and self.process.poll() is None:
            raise AssertionError("this server is already running: start it once")
        return start_moving(lambda: self._start(timeout, ready), self._move)

    def _move(self) -> None:
        self._use_port(free_port())

    def _start(self, timeout: float, ready: str) -> SanicServer:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, *self.args],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Sanic's second SIGINT kills its workers' process group (os.killpg): never ours.
            start_new_session=True,
        )
        STARTED.append(self)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if lost_port(self.movable, self.port):
                    raise PortTaken(f"port {self.port} taken")
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if request(self.port, ready, timeout=2).status_code < 500:
                    self._wait_serving()
                    return self
            except TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"server did not answer within {timeout} s:\n{self.log()}")

    def _wait_serving(self) -> None:
        """A single process answers requests while its after_server_start listeners still
        run (the loop runs them), and a SIGINT that arrives before its loop runs for good
        is lost (its handler is installed, the loop's wakeup is not: the process then
        ignores it, seen with the Memcache docs sample under load). Past "Worker ready",
        logged as the loop starts for good, a SIGINT stops it."""
        if "--single-process" in self.args:
            wait_for(lambda: "Worker ready" in self.full_log(), what="the worker's loop running")

    def wait_workers(self, count: int) -> None:
        """Wait until ``count`` workers started and Sanic's main process is monitoring them.

        A SIGINT that reaches Sanic's main process while it still waits for the workers'
        acks makes it loop for ever (sanic-org/sanic#2997); past this point it cannot.
        """
        wait_for(
            lambda: self.get("/seeds").json()["started"] >= count,
            what=f"{count} workers started",
        )
        self.wait_main_monitoring()

    def wait_main_monitoring(self) -> None:
        if self.get("/main-ready").text != "single-process":
            wait_for(lambda: "No change needed" in self.full_log(), what="main process monitoring")

    def counts_by_worker(self, workers: int) -> dict[str, str]:
        """The counter as seen by each worker: bursts of requests on fresh connections until
        all ``workers`` answered (one request at a time, the kernel may hand every
        connection to the same few idle workers; a burst keeps them busy)."""
        seen: dict[str, str] = {}

        def all_answered() -> bool:
            for body in self.bodies_on_fresh_connections("/count-pid", 2 * workers):
                count, pid = body.split()
                seen[pid] = count
            return len(seen) >= workers

        wait_for(all_answered, what=f"answers from {workers} workers")
        return seen

    def statuses_by_worker(self, path: str, workers: int) -> dict[str, int]:
        """The status each of ``workers`` workers answers ``path`` with (bursts on fresh
        connections until all answered; every answer names its worker in X-Worker-Pid)."""
        seen: dict[str, int] = {}

        def all_answered() -> bool:
            for response in self.responses_on_fresh_connections(path, 2 * workers):
                seen[response.headers["X-Worker-Pid"]] = response.status_code
            return len(seen) >= workers

        wait_for(all_answered, what=f"answers from {workers} workers")
        return seen

    def responses_on_fresh_connections(self, path: str, count: int) -> list[Response]:
        """``count`` concurrent GETs of ``path``, each on a connection of its own."""
        return self._burst([path] * count, count, fresh=True)

    def bodies_on_fresh_connections(self, path: str, count: int) -> list[str]:
        """The bodies of ``count`` concurrent GETs of ``path`` on fresh connections (each
        answered 200)."""
        paths = [path] * count
        return _bodies(paths, self._burst(paths, count, fresh=True))

    def from_every_worker(self, path: str, workers: int) -> dict[int, Any]:
        """``path`` as each of ``workers`` workers answers it (JSON with a "pid")."""
        seen: dict[int, Any] = {}

        def all_answered() -> bool:
            for body in self.bodies_on_fresh_connections(path, 2 * workers):
                reply = json.loads(body)
                seen[reply["pid"]] = reply
            return len(seen) >= workers

        wait_for(all_answered, what=f"{path} from {workers} workers")
        return seen

    def assert_served_by(self, class_name: str, workers: int) -> None:
        """Every worker serves with the interface class ``class_name`` (the workers' app
        reports it at /interface): never the default in its place."""
        replies = self.from_every_worker("/interface", workers).values()
        assert {reply["class"] for reply in replies} == {class_name}, self.log()

    def get_fresh(self, path: str) -> str:
        """GET on a new connection, so the kernel may hand it to any worker."""
        return self.get(path).text

    def _burst(self, paths: list[str], concurrency: int, *, fresh: bool = False) -> list[Response]:
        """Every path's response (see httpclient.burst); a request without one fails."""
        answers = asyncio.run(burst(self.port, paths, concurrency, fresh=fresh))
        failed = [answer for answer in answers if isinstance(answer, TransportError)]
        assert not failed, (f"{len(failed)} of {len(paths)} requests got no answer", failed[:3])
        return [answer for answer in answers if isinstance(answer, Response)]

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT (Sanic's graceful stop), then wait; kill only if it hangs. Returns the code.

        A server that ignores SIGINT fails the test, with one exception recognised from the
        stack the hung main process dumps (:func:`sanic_signal_hung_on_worker_state`): it
        is killed and tolerated (counted at the end of the run).
        """
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_hung(process)
                full = self.full_log(missing="<no log>")  # judged whole, shown cut
                if sanic_signal_hung_on_worker_state(full):
                    tolerate(
                        "Sanic's main process hung in its SIGINT shutdown on a worker_state"
                        " proxy reply (its signal handler and its monitor loop share one"
                        f" proxy); killed:\n{full[-_SHOWN:]}"
                    )
                    return process.returncode
                raise AssertionError(
                    f"server ignored SIGINT for {timeout} s:\n{full[-_SHOWN:]}"
                ) from None
        return process.returncode

    def terminate(self, timeout: float = 30.0) -> int:
        """Stop through the app's /terminate route (Sanic's monitor message, race-free, see
        tests/apps/workers_app.py), then wait. Returns the exit code (at once if the server
        had already exited)."""
        process = self.process
        assert process is not None, "the server was never started"
        if process.poll() is not None:
            return process.returncode
        self.get("/terminate")
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_hung(process)
            raise AssertionError(f"server did not stop in {timeout} s:\n{self.log()}") from None
        return process.returncode

    @staticmethod
    def _kill_hung(process: subprocess.Popen[bytes]) -> None:
        """SIGABRT to the main process first: faulthandler (PYTHONFAULTHANDLER) writes every
        thread's stack to the log before it dies (no core file: its core limit is set to 0);
        then SIGKILL to its process group, its workers too (own session)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            resource.prlimit(process.pid, resource.RLIMIT_CORE, (0, 0))
            process.send_signal(signal.SIGABRT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def __enter__(self) -> SanicServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def get(self, path: str) -> Response:
        """GET ``path`` on a new connection; it must answer 200."""
        response = request(self.port, path)
        assert response.status_code == 200, (response.status_code, response.text, self.log())
        return response

    def request(self, path: str, **options: Any) -> Response:
        """Any request (see httpclient.request), whatever status it is answered with."""
        return request(self.port, path, **options)

    def hammer(self, path: str, count: int, concurrency: int = 50) -> list[str]:
        """``count`` GETs of ``path``, at most ``concurrency`` in flight; every body, in order."""
        return self.hammer_paths([path] * count, concurrency)

    def hammer_through(
        self, path: str, count: int, concurrency: int, midway: str, after: int
    ) -> tuple[list[str], int]:
        """Like hammer on fresh connections, and GET ``midway`` (on a connection of its own,
        while the others go on) once ``after`` answers arrived. Returns the bodies answered
        200 and how many requests failed (connection errors during a restart)."""

        async def run() -> list[Response | TransportError]:
            reached = asyncio.Event()
            loop = asyncio.get_running_loop()

            def answered(number: int) -> None:
                if number >= after:
                    reached.set()

            async def send_midway() -> None:
                await reached.wait()
                response = await loop.run_in_executor(None, request, self.port, midway)
                assert response.status_code == 200, (midway, response.status_code)

            load = burst(self.port, [path] * count, concurrency, fresh=True, answered=answered)
            answers, _ = await asyncio.gather(load, send_midway())
            return answers

        answers = asyncio.run(run())
        bodies = [a.text for a in answers if isinstance(a, Response) and a.status_code == 200]
        return bodies, count - len(bodies)

    def responses(self, path: str, count: int, concurrency: int = 50) -> list[Response]:
        """``count`` GETs of ``path``, at most ``concurrency`` in flight, whatever status."""
        return self._burst([path] * count, concurrency)

    def hammer_paths(self, paths: list[str], concurrency: int = 50) -> list[str]:
        """Every path's body, in order; each must be answered 200."""
        return _bodies(paths, self._burst(paths, concurrency))


def _bodies(paths: list[str], responses: list[Response]) -> list[str]:
    """The bodies of the responses to ``paths``, each of which must be 200."""
    for path, response in zip(paths, responses, strict=True):
        assert response.status_code == 200, (path, response.status_code, response.text)
    return [response.text for response in responses]


def assert_stopped_cleanly(
    server: SanicServer, code: int, main_pid: int, *, main_stops_manager: bool = True
) -> None:
    """The server exited with 0, no traceback went through our code, and no manager is
    left: our main-process listener stopped the one it started (it says so once the
    manager exited), or, for workers that met at a manager of their own (init_app in a
    listener), that one exits when it sees the main process gone."""
    log = server.log()
    if code != 0 and sanic_signal_crossed_replies(server.full_log()):
        tolerate(
            "Sanic's main process failed its SIGINT shutdown on a crossed worker_state"
            f" reply (its signal handler and its monitor loop share one proxy):\n{log}"
        )
    else:
        assert code == 0, log
    assert server.library_tracebacks() == []
    if main_stops_manager:
        assert "stopped SyncManager(" in log, log
        assert manager_processes_watching(main_pid) == []
    else:
        wait_for(lambda: manager_processes_watching(main_pid) == [], timeout=10, what="exit")


def pids_of(bodies: list[str]) -> set[str]:
    return {body.split()[1] for body in bodies}


def values_of(bodies: list[str]) -> list[int]:
    return sorted(int(body.split()[0]) for body in bodies)


def wait_for(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Call ``check()`` until it returns something truthy; that value (fail after timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)
