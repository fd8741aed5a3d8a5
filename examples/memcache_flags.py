"""Feature flags on memcached, switched at run time and seen by every worker.

MEMCACHED_PORT=11211 sanic examples.memcache_flags:app --workers 2
"""

import os

from sanic import Request, Sanic
from sanic.response import json

from sanic_synchro_ctx import Memcache, Synchro

app = Sanic("memcache_flags")
Synchro(app, interface=Memcache("127.0.0.1", int(os.environ.get("MEMCACHED_PORT", "11211"))))


@app.after_server_start
async def defaults(app):
    await app.ctx.synchro.set_default({"new_checkout": False})


@app.post("/flags/<name>/<state:on|off>")
async def switch(request: Request, name: str, state: str):
    await request.ctx.synchro.set(name, state == "on")
    return json({name: state == "on"})


@app.get("/checkout")
async def checkout(request: Request):
    new = await request.ctx.synchro.get("new_checkout", False)
    return json({"flow": "new" if new else "classic"})
