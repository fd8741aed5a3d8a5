"""The test harness's own judgement of a server's log (tests/servers.py): what it lets pass
as Sanic's failure, not this library's, must be that failure and nothing else."""

from __future__ import annotations

from pathlib import Path

from tests.servers import (
    SanicServer,
    sanic_signal_crossed_replies,
    sanic_signal_hung_on_worker_state,
)

#: The log of a `sanic --workers 2` server stopped by SIGINT in a full run (Sanic 25.12.1),
#: its traceback cut to the frames that name where it failed.
CROSSED = """\
Srv 0 2026-12-01 00:23:13 +0000 INFO: Starting worker [20532]
Srv 1 2026-12-01 00:23:13 +0000 INFO: Worker ready [20533]
Main  2026-12-01 00:23:16 +0000 INFO: Received signal SIGINT. Shutting down.
Main  2026-12-01 00:23:16 +0000 ERROR: Experienced exception while trying to serve
Main  2026-12-01 00:23:16 +0000 INFO: Server Stopped
Srv 0 2026-12-01 00:23:16 +0000 INFO: Worker complete [20532]
Main  2026-12-01 00:23:16 +0000 INFO: Synchro 'synchro': stopped SyncManager(/tmp/m.sock)
\u256d \u26a0\ufe0f  AttributeError while handling TypeError
\u2502 sanic/mixins/startup.py:1160 Sanic.serve:                manager.run()\u27a4
\u2502 sanic/worker/process.py:117  WorkerProcess.terminate:    self.set_state(\u2026)\u27a4
\u2502 sanic/worker/process.py:61   WorkerProcess.set_state:
\u2502 TypeError: 'NoneType' object is not a mapping
\u2502 sanic/mixins/startup.py:1214 <listcomp>:
\u2570 AttributeError in except: 'str' object has no attribute 'get'
Srv 1 2026-12-01 00:23:16 +0000 INFO: Worker complete [20533]
"""


def test_the_crossed_reply_failure_is_recognised() -> None:
    assert sanic_signal_crossed_replies(CROSSED)


def test_a_frame_of_this_library_is_never_put_down_to_sanic() -> None:
    ours = CROSSED.replace(
        "\u2570 AttributeError",
        "\u2502 sanic_synchro_ctx/extension.py:300 Synchro._stop:\n\u2570 AttributeError",
    )
    assert not sanic_signal_crossed_replies(ours)


def test_a_failure_before_the_signal_or_elsewhere_is_not_it() -> None:
    before = CROSSED.replace("INFO: Received signal SIGINT. Shutting down.\n", "").replace(
        "INFO: Server Stopped", "INFO: Received signal SIGINT. Shutting down."
    )
    assert not sanic_signal_crossed_replies(before)
    elsewhere = CROSSED.replace("WorkerProcess.set_state", "WorkerProcess.spawn")
    assert not sanic_signal_crossed_replies(elsewhere)
    no_failure = CROSSED.replace("ERROR: Experienced exception while trying to serve", "")
    assert not sanic_signal_crossed_replies(no_failure)


#: A `sanic --workers 2` server hung after SIGINT (worker 1 never told to stop, as in a CI
#: run with Sanic 25.12.1), then SIGABRT: the stacks faulthandler wrote, paths shortened.
LIB = "/root/.pyenv/versions/3.11.7/lib/python3.11"
SITE = "/repo/.venv/lib/python3.11/site-packages"
HUNG = f"""\
Srv 0 2026-12-01 03:39:52 +0000 INFO: Worker ready [9163]
Srv 1 2026-12-01 03:39:52 +0000 INFO: Worker ready [9164]
Main  2026-12-01 03:39:52 +0000 INFO: No change needed. There are already 2 workers.
Main  2026-12-01 03:39:55 +0000 INFO: Received signal SIGINT. Shutting down.
Srv 0 2026-12-01 03:39:55 +0000 INFO: Stopping worker [9163]
Srv 0 2026-12-01 03:39:55 +0000 INFO: Worker complete [9163]
Fatal Python error: Aborted

Thread 0x00007f503a3ff6c0 (most recent call first):
  File "{LIB}/threading.py", line 331 in wait
  File "{LIB}/threading.py", line 1002 in _bootstrap

Current thread 0x00007f7bcde06b80 (most recent call first):
  File "{LIB}/multiprocessing/connection.py", line 395 in _recv
  File "{LIB}/multiprocessing/connection.py", line 437 in _recv_bytes
  File "{LIB}/multiprocessing/connection.py", line 250 in recv
  File "{LIB}/multiprocessing/managers.py", line 822 in _callmethod
  File "<string>", line 2 in __getitem__
  File "{SITE}/sanic/worker/process.py", line 59 in set_state
  File "{SITE}/sanic/worker/process.py", line 117 in terminate
  File "{SITE}/sanic/worker/manager.py", line 405 in shutdown
  File "{SITE}/sanic/worker/manager.py", line 400 in shutdown_signal
  File "{LIB}/multiprocessing/connection.py", line 395 in _recv
  File "{LIB}/multiprocessing/managers.py", line 822 in _callmethod
  File "<string>", line 2 in __getitem__
  File "{SITE}/sanic/worker/manager.py", line 444 in _sync_states
  File "{SITE}/sanic/worker/manager.py", line 305 in monitor
  File "{SITE}/sanic/worker/manager.py", line 201 in run
  File "{SITE}/sanic/mixins/startup.py", line 1160 in serve
  File "{SITE}/sanic/cli/app.py", line 130 in run
  File "<frozen runpy>", line 88 in _run_code
"""


def test_the_hang_on_a_worker_state_reply_is_recognised() -> None:
    assert sanic_signal_hung_on_worker_state(HUNG)


def test_a_hang_with_this_library_on_the_main_stack_is_never_put_down_to_sanic() -> None:
    ours = HUNG.replace(
        f'  File "{SITE}/sanic/worker/manager.py", line 400 in shutdown_signal\n',
        f'  File "{SITE}/sanic/worker/manager.py", line 400 in shutdown_signal\n'
        f'  File "/repo/sanic_synchro_ctx/extension.py", line 300 in _stop\n',
    )
    assert not sanic_signal_hung_on_worker_state(ours)


def test_a_hang_elsewhere_or_before_the_signal_is_not_it() -> None:
    no_signal = HUNG.replace("INFO: Received signal SIGINT. Shutting down.", "INFO: ready")
    assert not sanic_signal_hung_on_worker_state(no_signal)
    no_stack = HUNG.partition("Fatal Python error")[0]
    assert not sanic_signal_hung_on_worker_state(no_stack)
    not_a_proxy_call = HUNG.replace(" in _callmethod", " in poll")
    assert not sanic_signal_hung_on_worker_state(not_a_proxy_call)
    # A proxy call waiting in another thread, the main one elsewhere: not it either.
    other_thread = HUNG.replace("Thread 0x00007f503a3ff6c0", "Current thread 0x1").replace(
        "Current thread 0x00007f7bcde06b80", "Thread 0x2"
    )
    assert not sanic_signal_hung_on_worker_state(other_thread)


def test_a_hung_server_leaves_its_main_threads_stack_in_its_log(tmp_path: Path) -> None:
    """What the judgement above reads is real: killed as a hung server is, a running
    `sanic --workers 2` writes its main thread's stack (its monitor loop) to its log."""
    server = SanicServer.cli(tmp_path, "--workers", "2").start()
    server.wait_workers(2)
    assert server.process is not None
    SanicServer._kill_hung(server.process)
    log = server.full_log()
    assert server.process.returncode == -6, log  # SIGABRT, after faulthandler's dump
    main_stack = log.rpartition("\nCurrent thread ")[2]
    assert " in monitor\n" in main_stack, log
    assert not sanic_signal_hung_on_worker_state(log)  # no SIGINT, no proxy call waiting
