"""A counter shared by every worker: the usage shown in the README.

    python examples/counter.py                   # 4 workers on 127.0.0.1:8000
    sanic examples.counter:app --workers 4       # the same through Sanic's CLI

Environment: HOST, PORT, WORKERS.
"""

import os

from sanic import Request, Sanic
from sanic.response import text

from sanic_synchro_ctx import Synchro

app = Sanic("counter")
# Default interface: SyncManager(), shared by all workers. The defaults are set (where
# missing) once, before any worker serves: no request ever finds the counter unset.
Synchro(app, defaults={"counter": 0})


@app.get("/inc")
async def inc(request: Request):  # an async handler gets the async front end
    return text(str(await request.ctx.synchro.increment("counter")))


@app.get("/count")
def count(request: Request):  # a plain def handler gets the blocking front end
    return text(str(request.ctx.synchro.counter))


if __name__ == "__main__":
    app.run(
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        workers=int(os.environ.get("WORKERS", "4")),
        access_log=False,
    )
