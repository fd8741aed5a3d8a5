"""Rate limits shared by all workers, with the route decorator.

sanic examples.rate_limit:app --workers 4

Each client may call / five times a minute and /export twice an hour (an export costs 1 of
a budget of 2); the budgets are shared by every worker, so four workers still allow five.
Over the limit the answer is 429 with Retry-After; every answer carries RateLimit-Limit,
RateLimit-Remaining and RateLimit-Reset.
"""

from sanic import Request, Sanic
from sanic.response import json

from sanic_synchro_ctx import Synchro

app = Sanic("rate_limit")
synchro = Synchro(app)


def client(request: Request) -> str:
    """The budget a request spends from: one per client (and route)."""
    return f"{request.headers.get('x-client', request.ip)}:{request.name}"


@app.get("/")
@synchro.limit("5/minute", key=client)
async def index(request: Request):
    return json({"ok": True})


@app.get("/export")
@synchro.limit((2, 3600), key=client)
def export(request: Request):  # plain def handlers are limited the same way
    return json({"exported": True})


@app.get("/quota")
async def quota(request: Request):
    """The same GCRA step by hand, for code that is not a route (cost=1 spends one)."""
    answer = await request.ctx.synchro.rate_limit("quota", limit=100, per=86400)
    return json({"allowed": answer.allowed, "remaining": answer.remaining})
