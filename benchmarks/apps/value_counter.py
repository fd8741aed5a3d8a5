"""/inc written by hand: a multiprocessing.Value and its lock in app.shared_ctx."""

from multiprocessing import Value

from sanic import Request, Sanic
from sanic.response import text

app = Sanic("bench_value")


@app.main_process_start
async def create(app: Sanic) -> None:
    app.shared_ctx.counter = Value("q", 0)


@app.get("/ping")
async def ping(request: Request):
    return text("pong")


@app.get("/inc")
async def inc(request: Request):
    counter = request.app.shared_ctx.counter
    with counter.get_lock():
        counter.value += 1
        value = counter.value
    return text(str(value))
