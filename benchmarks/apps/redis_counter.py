"""/inc written by hand: INCR through a raw redis.asyncio client."""

import os

import redis.asyncio
from sanic import Request, Sanic
from sanic.response import text

app = Sanic("bench_redis")


@app.before_server_start
async def connect(app: Sanic) -> None:
    app.ctx.redis = redis.asyncio.Redis.from_url(os.environ["BENCH_REDIS_URL"])


@app.after_server_stop
async def close(app: Sanic) -> None:
    await app.ctx.redis.aclose()


@app.get("/ping")
async def ping(request: Request):
    return text("pong")


@app.get("/inc")
async def inc(request: Request):
    return text(str(await request.app.ctx.redis.incr("bench:raw:counter")))
