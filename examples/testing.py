"""Testing an app that uses the shared context, with sanic-testing and InMemory.

python -m pytest examples/testing.py
"""

from sanic import Request, Sanic
from sanic.response import text

from sanic_synchro_ctx import InMemory, Synchro


def create_app() -> Sanic:
    app = Sanic("under_test")
    Synchro(app, interface=InMemory())  # one process: no manager, no server

    @app.get("/inc")
    async def inc(request: Request):
        return text(str(await request.ctx.synchro.increment("counter")))

    return app


def test_counter_persists_across_requests():
    app = create_app()
    assert app.test_client.get("/inc")[1].text == "1"
    assert app.test_client.get("/inc")[1].text == "2"  # each request restarts the server
