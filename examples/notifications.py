"""Every worker keeps a local cache; a change tells all of them to drop their copy.

sanic examples.notifications:app --workers 4

GET /price/<item> answers from this worker's own dict when it can (no round trip);
POST /price/<item>/<cents> stores the new price in the shared context and publishes the
item's name on "prices": every worker's on_message handler drops its cached copy, so the
next read in any worker fetches the new price.
"""

import os

from sanic import Request, Sanic
from sanic.response import json

from sanic_synchro_ctx import Synchro

app = Sanic("notifications")
synchro = Synchro(app, defaults={"price:tea": 250})
CACHE: dict[str, int] = {}  # this worker's own copy: fast, and possibly stale


@synchro.on_message("prices")
async def drop_cached(app: Sanic, item: str) -> None:
    CACHE.pop(item, None)  # runs in every worker, for every message on "prices"


@app.get("/price/<item>")
async def price(request: Request, item: str):
    cached = item in CACHE
    if not cached:
        CACHE[item] = await request.ctx.synchro.get(f"price:{item}")
    return json({"item": item, "cents": CACHE[item], "cached": cached, "pid": os.getpid()})


@app.post("/price/<item>/<cents:int>")
async def set_price(request: Request, item: str, cents: int):
    synchro = request.ctx.synchro
    await synchro.set(f"price:{item}", cents)
    told = await synchro.publish("prices", item)  # how many workers heard it
    return json({"item": item, "cents": cents, "workers_told": told})
