"""``python -m sanic_synchro_ctx serve``: see :mod:`.interfaces.syncmanager.command`."""

from .interfaces.syncmanager.command import main

if __name__ == "__main__":
    main()
