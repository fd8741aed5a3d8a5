"""Pipelines and scans: several operations in one round trip, and keys read page by page.

sanic examples.pipelines:app --workers 2
"""

from sanic import Request, Sanic
from sanic.response import json

from sanic_synchro_ctx import Synchro

app = Sanic("pipelines")
Synchro(app)


@app.post("/visit/<page:str>")
async def visit(request: Request, page: str):
    """Four counters and a read, in one round trip; each result after the block."""
    async with request.ctx.synchro.pipeline() as p:
        page_views = p.increment(f"views:{page}")
        total = p.increment("views:total")
        p.increment(f"visitors:{request.headers.get('x-visitor', 'anonymous')}", ttl=3600)
        p.set("last-page", page)
        first = p.setdefault("first-page", page)
    return json({"page": await page_views, "total": await total, "first": await first})


@app.get("/report")
def report(request: Request):  # a plain def handler: the blocking front end
    synchro = request.ctx.synchro
    pages = sorted(synchro.scan("views:*", count=100))  # page by page, never all at once
    with synchro.pipeline() as p:
        counts = [p.get(key, 0) for key in pages]
    return json({key: count.result() for key, count in zip(pages, counts, strict=True)})
