"""``python -m sanic_synchro_ctx``: the data commands and ``serve`` (see :mod:`.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
