"""sanic-ext's dependency injection: a handler that declares ``synchro: SynchroContext`` (or
``BlockingSynchroContext``) receives that front end. The suite runs with
SANIC_AUTO_EXTEND=false (see conftest.py); these apps turn sanic-ext on themselves."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from sanic import Request, Sanic
from sanic.response import text
from sanic_ext import Extend

from sanic_synchro_ctx import InMemory, Synchro
from sanic_synchro_ctx.context import BlockingSynchroContext, SynchroContext


def test_handlers_receive_the_front_end_they_declare(app_name: str) -> None:
    app = Sanic(app_name)
    Extend(app)
    Synchro(app, interface=InMemory())
    seen: dict[str, Any] = {}

    @app.get("/async/<step:int>")
    async def in_async(request: Request, step: int, synchro: SynchroContext) -> Any:
        seen["async"] = synchro
        return text(str(await synchro.increment("n", step)))

    @app.get("/def")
    def in_def(request: Request, synchro: BlockingSynchroContext) -> Any:
        seen["def"] = synchro
        return text(str(synchro.increment("n")))

    assert app.test_client.get("/async/5")[1].text == "5"
    assert app.test_client.get("/def")[1].text == "6"
    assert seen["async"] is app.ctx.synchro
    assert seen["def"] is app.ctx.synchro.sync


def test_without_sanic_ext_nothing_imports_it() -> None:
    code = (
        "import sys\n"
        "from sanic import Sanic\n"
        "from sanic_synchro_ctx import Synchro, InMemory\n"
        "Synchro(Sanic('plain'), interface=InMemory())\n"
        "print('sanic_ext' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"
