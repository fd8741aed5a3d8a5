"""The test harness's own judgement of a server's log (tests/servers.py): what it lets pass
as Sanic's failure, not this library's, must be that failure and nothing else."""

from __future__ import annotations

from tests.servers import sanic_signal_crossed_replies

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
