"""A background job that runs in exactly one worker: a leader task.

sanic examples.leader_task:app --workers 4

Every worker contends for the lead; the one holding it runs ``sweeper`` and renews its lease
while it runs. If that worker dies, another takes over within about ``ttl`` seconds.
"""

import asyncio
import os

from sanic import Request, Sanic
from sanic.response import json

from sanic_synchro_ctx import Synchro

app = Sanic("leader_task")
synchro = Synchro(app, defaults={"sweeps": 0})


@synchro.leader_task("sweeper", ttl=10)
async def sweeper(app: Sanic):
    ctx = app.ctx.synchro
    await ctx.set("sweeper-pid", os.getpid())
    while True:  # cancelled if the lease is lost, and when the server stops
        await ctx.increment("sweeps")  # e.g. purge expired sessions
        await asyncio.sleep(1)


@app.get("/sweeps")
async def sweeps(request: Request):
    ctx = request.ctx.synchro
    return json(
        {
            "sweeps": await ctx.get("sweeps"),
            "leader": await ctx.get("sweeper-pid"),
            "leading": await ctx.locked("leader:sweeper"),
        }
    )
