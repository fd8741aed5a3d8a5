"""Several separately started processes (an ASGI server's workers, say) sharing one
standalone manager:

    python -m sanic_synchro_ctx serve --socket /tmp/synchro.sock --authkey-file /tmp/synchro.key
    SYNCHRO_SOCKET=/tmp/synchro.sock SYNCHRO_AUTHKEY_FILE=/tmp/synchro.key \\
        uvicorn examples.standalone_manager:app --workers 2
"""

import os

from sanic import Request, Sanic
from sanic.response import text

from sanic_synchro_ctx import Synchro, SyncManager

app = Sanic("standalone")
with open(os.environ["SYNCHRO_AUTHKEY_FILE"], "rb") as key_file:
    Synchro(app, interface=SyncManager(os.environ["SYNCHRO_SOCKET"], authkey=key_file.read()))


@app.get("/inc")
async def inc(request: Request):
    return text(str(await request.ctx.synchro.increment("counter")))
