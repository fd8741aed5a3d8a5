"""The counter on Redis through asyncio_redis.

REDIS_PORT=6379 sanic examples.asyncio_redis_counter:app --workers 2
"""

import os

from sanic import Request, Sanic
from sanic.response import text

from sanic_synchro_ctx import AsyncioRedis, Synchro

app = Sanic("asyncio_redis_counter")
port = int(os.environ.get("REDIS_PORT", "6379"))
Synchro(app, interface=AsyncioRedis("127.0.0.1", port, db=0, password=None, poolsize=4))


@app.get("/inc")
async def inc(request: Request):
    return text(str(await request.ctx.synchro.increment("counter")))
