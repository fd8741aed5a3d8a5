"""The route tests use to know that Sanic's main process is past its workers' acks.

Sanic's main process waits for every worker's ack before it starts its monitor loop; a
SIGINT that reaches it in that window makes it loop for ever (sanic-org/sanic#2997). A test
server that is stopped with SIGINT first asks this route, then waits for the answer in the
log (tests/servers.py, SanicServer.wait_main_monitoring).
"""

from typing import Any

from sanic import Request
from sanic.response import text


def add_main_ready(app: Any) -> None:
    """``GET /main-ready`` on ``app``: asks Sanic's main process to "scale" to the current
    worker count, a no-op it handles (and logs: "No change needed") only once it finished
    waiting for the workers' acks; "single-process" where no main process runs."""

    async def main_ready(request: Request) -> Any:
        multiplexer = getattr(request.app, "multiplexer", None)
        if multiplexer is None:
            return text("single-process")
        servers = sum(1 for state in multiplexer.workers.values() if state.get("server"))
        multiplexer.scale(servers)
        return text(str(servers))

    app.add_route(main_ready, "/main-ready", name="tests_main_ready")
