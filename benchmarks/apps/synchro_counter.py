"""/inc on sanic-synchro-ctx: SyncManager (default) or AIORedis (BENCH_REDIS_URL set);
BENCH_STATS=0 switches the interface's statistics off."""

import os

from sanic import Request, Sanic
from sanic.response import json, text

from sanic_synchro_ctx import AIORedis, Synchro

app = Sanic("bench_synchro")
url = os.environ.get("BENCH_REDIS_URL")
synchro = Synchro(app, interface=AIORedis.from_url(url, prefix="bench:ours:") if url else None)


@app.after_server_start
def statistics(app: Sanic) -> None:
    app.ctx.synchro.interface.stats_enabled = os.environ.get("BENCH_STATS", "1") == "1"


@app.get("/ping")
async def ping(request: Request):
    return text("pong")


@app.get("/inc")
async def inc(request: Request):
    return text(str(await request.ctx.synchro.increment("counter")))


@app.get("/batch-sizes")
async def batch_sizes(request: Request):
    """This worker's round trips so far, by how many operations each carried."""
    sizes = getattr(request.ctx.synchro.interface, "batch_sizes", {})
    return json({str(size): count for size, count in sorted(sizes.items())})
