"""A critical section across workers: one worker at a time runs the nightly job.

sanic examples.locks:app --workers 4
"""

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
