"""The counter on Redis: every worker of every machine pointed at the same server.

REDIS_URL=redis://127.0.0.1:6379/0 sanic examples.redis_counter:app --workers 4
"""

import os

from sanic import Request, Sanic
from sanic.response import text

from sanic_synchro_ctx import AIORedis, Synchro

app = Sanic("redis_counter")
Synchro(app, interface=AIORedis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")))


@app.get("/inc")
async def inc(request: Request):
    return text(str(await request.ctx.synchro.increment("counter")))


@app.get("/count")
def count(request: Request):
    return text(str(request.ctx.synchro.get("counter", 0)))
