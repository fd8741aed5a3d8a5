"""Testing an app that uses the shared context, with sanic-testing.

    python -m pytest examples/testing.py
    python -m pytest examples/testing.py --synchro-url redis://127.0.0.1:6379/0

The package's pytest plugin gives each test that asks for ``synchro_interface`` a fresh
namespace on the backend named by ``--synchro-url`` (or ``SANIC_SYNCHRO_URL``; default
``memory://``), cleared after the test.
"""

import itertools

from sanic import Request, Sanic
from sanic.response import text

from sanic_synchro_ctx import InMemory, Synchro
from sanic_synchro_ctx.interfaces.base import BaseSynchroInterface

_apps = itertools.count()


def create_app(interface: BaseSynchroInterface) -> Sanic:
    app = Sanic(f"under_test_{next(_apps)}")  # Sanic wants one name per app
    Synchro(app, interface=interface)

    @app.get("/inc")
    async def inc(request: Request):
        return text(str(await request.ctx.synchro.increment("counter")))

    return app


def test_counter_persists_across_requests():
    app = create_app(InMemory())  # one process: no manager, no server
    assert app.test_client.get("/inc")[1].text == "1"
    assert app.test_client.get("/inc")[1].text == "2"  # each request restarts the server


def test_counter_on_the_configured_backend(synchro_interface):
    app = create_app(synchro_interface)  # a namespace of this test's own: starts empty
    assert [app.test_client.get("/inc")[1].text for _ in range(3)] == ["1", "2", "3"]
