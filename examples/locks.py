"""Critical sections across workers: one worker at a time runs the nightly job, and writes
carry a fencing token so that a holder whose lease ran out cannot overwrite newer work.

sanic examples.locks:app --workers 4
"""

import asyncio

from sanic import Request, Sanic
from sanic.response import json

from sanic_synchro_ctx import LockTimeout, Synchro

app = Sanic("locks")
Synchro(app)


@app.post("/nightly")
async def nightly(request: Request):
    try:
        async with request.ctx.synchro.lock("nightly-job", ttl=300, timeout=0):
            runs = await request.ctx.synchro.increment("nightly-runs")
            return json({"ran": True, "runs": runs})
    except LockTimeout:
        return json({"ran": False, "reason": "already running"}, status=409)


@app.post("/nightly-sync")
def nightly_sync(request: Request):  # the same from a plain def handler
    try:
        with request.ctx.synchro.lock("nightly-job", ttl=300, timeout=0):
            return json({"ran": True, "runs": request.ctx.synchro.increment("nightly-runs")})
    except LockTimeout:
        return json({"ran": False, "reason": "already running"}, status=409)


@app.post("/report")
async def report(request: Request):
    """A long job: the lease is renewed while it runs (auto_renew); each write is fenced."""
    ctx = request.ctx.synchro
    async with ctx.lock("report", ttl=10, auto_renew=True, timeout=30) as lock:
        await asyncio.sleep(0.1)  # the work
        # The storage keeps the highest token it saw and refuses writes with a lower one:
        # here a compare_and_set stands in for it.
        while True:
            current = await ctx.setdefault("report", {"token": 0})
            if lock.token <= current["token"]:
                return json({"written": False, "token": lock.token}, status=409)
            if await ctx.compare_and_set("report", current, {"token": lock.token}):
                break
    return json({"written": True, "token": lock.token})


@app.get("/downloads")
async def downloads(request: Request):
    """At most 3 downloads at a time across all workers."""
    async with request.ctx.synchro.semaphore("downloads", 3, ttl=60, timeout=10):
        await asyncio.sleep(0.05)  # the download
    return json({"done": True})
