"""sanic-synchro-ctx: one shared, atomic key-value context for every worker of a Sanic app.

    from sanic_synchro_ctx import Synchro
    Synchro(app)                       # app.ctx.synchro, request.ctx.synchro

See the README and the documentation for interfaces, operations and run modes.
"""

from .compat import SanicSynchroCtx
from .config import interface_from_url
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

__version__ = "0.2.0.dev0"

__all__ = [
    "AIORedis",
    "AsyncioRedis",
    "BaseSynchroInterface",
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
    "SynchroError",
    "SynchroSerializationError",
    "SynchroTypeError",
    "SynchroUnsupported",
    "SynchroValueError",
    "__version__",
    "interface_from_url",
]
