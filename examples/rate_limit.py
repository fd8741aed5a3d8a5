"""A fixed-window rate limit shared by all workers: 5 requests per client per window.

sanic examples.rate_limit:app --workers 4
"""

from sanic import Request, Sanic
from sanic.response import json

from sanic_synchro_ctx import Synchro

app = Sanic("rate_limit")
Synchro(app)

LIMIT = 5
WINDOW = 60  # seconds


@app.on_request
async def limit(request: Request):
    if request.path == "/reset":
        return None
    key = f"hits:{request.headers.get('x-client', request.ip)}"
    hits = await request.ctx.synchro.increment(key)
    if hits == 1:
        await request.ctx.synchro.expire(key, WINDOW)  # the window starts at the first hit
    if hits > LIMIT:
        return json({"error": "too many requests"}, status=429)
    return None


@app.get("/")
async def index(request: Request):
    return json({"ok": True})
