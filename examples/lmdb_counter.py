"""The counter on LMDB: one memory-mapped file shared by every worker, no server at all.

    sanic examples.lmdb_counter:app --workers 4
    SYNCHRO_LMDB_PATH=/var/lib/app/synchro sanic examples.lmdb_counter:app --workers 4

Without a path the file lives as long as the app; with one, data survives restarts and any
process that opens the same path shares it (another app, a script, uvicorn's workers).
"""

import os

from sanic import Request, Sanic
from sanic.response import text

from sanic_synchro_ctx import LMDB, Synchro

app = Sanic("lmdb_counter")
Synchro(app, interface=LMDB(os.environ.get("SYNCHRO_LMDB_PATH")), defaults={"counter": 0})


@app.get("/inc")
async def inc(request: Request):
    return text(str(await request.ctx.synchro.increment("counter")))


@app.get("/count")
def count(request: Request):
    return text(str(request.ctx.synchro.counter))
