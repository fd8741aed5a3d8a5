"""/inc on sanic-synchro-ctx: SyncManager (default) or AIORedis (BENCH_REDIS_URL set)."""

import os

from sanic import Request, Sanic
from sanic.response import text

from sanic_synchro_ctx import AIORedis, Synchro

app = Sanic("bench_synchro")
url = os.environ.get("BENCH_REDIS_URL")
Synchro(app, interface=AIORedis.from_url(url, prefix="bench:ours:") if url else None)


@app.get("/ping")
async def ping(request: Request):
    return text("pong")


@app.get("/inc")
async def inc(request: Request):
    return text(str(await request.ctx.synchro.increment("counter")))
