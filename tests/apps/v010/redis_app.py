# The 0.1.0 README's Redis example, with only what current Sanic and Python require
# changed: the imports the README left out (the aioredis package does not import on
# Python 3.11: its API lives on as redis.asyncio), distinct handler names, app.run() under
# a main guard. (The tests point "redis://localhost" at their own Redis.)
import redis.asyncio as aioredis
from sanic import Request, Sanic
from sanic.response import html

from sanic_synchro_ctx import SanicSynchroCtx

redis = aioredis.from_url("redis://localhost")
app = Sanic("sample")
s = SanicSynchroCtx(app, backend="redis", redis_client=redis)

@app.after_server_start
async def handler(app, loop=None):
    # This will only set this value if it doesn't already exist
    # So only the first worker will set this value
    await app.ctx.synchro.set_default({"counter": 0})

@app.route("/inc")
async def increment(request: Request):
    # atomic increment operation
    counter = await request.app.ctx.synchro.increment("counter")
    print(f"counter: {counter}", flush=True)
    return html("<p>Incremented!</p>")

@app.route("/count")
async def count(request: Request):
    # Get from shared context:
    counter = await request.app.ctx.synchro.counter
    print(f"counter: {counter}", flush=True)
    return html(f"<p>count: {counter}</p>")

if __name__ == "__main__":
    app.run("127.0.0.1", port=8000, workers=8)
