"""Factory style: create the extension at import time, attach it inside a listener.

sanic examples.factory:app --workers 2
"""

from sanic import Request, Sanic
from sanic.response import json

from sanic_synchro_ctx import Synchro

app = Sanic("factory")
synchro = Synchro()


@app.before_server_start
async def setup(app):
    synchro.init_app(app)  # the first request already sees request.ctx.synchro


@app.get("/visit/<page>")
async def visit(request: Request, page: str):
    visits = await request.ctx.synchro.increment(f"visits:{page}")
    return json({"page": page, "visits": visits})
