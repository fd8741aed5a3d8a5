# The 0.1.0 README's first example, with only what current Sanic requires changed: the
# imports the README left out, distinct handler names, app.run() under a main guard.
from sanic import Request, Sanic
from sanic.response import html

from sanic_synchro_ctx import SanicSynchroCtx

app = Sanic("sample")
s = SanicSynchroCtx(app)

@app.after_server_start
def handler(app, loop=None):
    # This will only set this value if it doesn't already exist
    # So only the first worker will set this value
    app.ctx.synchro.set_default({"counter": 0})

@app.route("/inc")
def increment(request: Request):
    # atomic increment operation
    counter = request.app.ctx.synchro.increment("counter")
    print("counter: {}".format(counter), flush=True)
    return html("<p>Incremented!</p>")

@app.route("/count")
def count(request: Request):
    # Get from shared context:
    counter = request.app.ctx.synchro.counter
    print("counter: {}".format(counter), flush=True)
    return html(f"<p>count: {counter}</p>")

if __name__ == "__main__":
    app.run("127.0.0.1", port=8000, workers=8)
