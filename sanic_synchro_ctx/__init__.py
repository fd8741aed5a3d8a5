"""sanic-synchro-ctx: one shared, atomic key-value context for every worker of a Sanic app.

    from sanic_synchro_ctx import Synchro
    Synchro(app)                       # app.ctx.synchro, request.ctx.synchro

See the README and the documentation for interfaces, operations and run modes.
"""

import typing as _typing

from .compat import SanicSynchroCtx
from .config import interface_from_url, register_scheme
from .connect import connect
from .context import BlockingSynchroContext, SynchroContext
from .errors import (
    LockNotOwned,
    LockTimeout,
    SynchroConnectionError,
    SynchroError,
    SynchroSerializationError,
    SynchroTypeError,
    SynchroUnsupported,
    SynchroValueError,
)
from .extension import Synchro
from .interfaces.base import BaseSynchroInterface
from .interfaces.lmdb import LMDB
from .interfaces.memcache import Memcache
from .interfaces.memory import InMemory
from .interfaces.redis import AIORedis, AsyncioRedis
from .interfaces.syncmanager import SyncManager
from .ratelimit import RateLimit

if _typing.TYPE_CHECKING:
    from .inspector import SynchroInspector

__version__ = "0.2.0.dev0"

__all__ = [
    "AIORedis",
    "AsyncioRedis",
    "BaseSynchroInterface",
    "BlockingSynchroContext",
    "InMemory",
    "LMDB",
    "LockNotOwned",
    "LockTimeout",
    "Memcache",
    "RateLimit",
    "SanicSynchroCtx",
    "SyncManager",
    "Synchro",
    "SynchroConnectionError",
    "SynchroContext",
    "SynchroError",
    "SynchroInspector",
    "SynchroSerializationError",
    "SynchroTypeError",
    "SynchroUnsupported",
    "SynchroValueError",
    "__version__",
    "connect",
    "interface_from_url",
    "register_scheme",
]


def __getattr__(name: str) -> object:
    """``SynchroInspector`` is a Sanic Inspector: imported on first use, so that importing
    the package (as the manager process does) imports no sanic."""
    if name == "SynchroInspector":
        from .inspector import SynchroInspector

        return SynchroInspector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
