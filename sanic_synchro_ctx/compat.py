"""``SanicSynchroCtx``: sanic-synchro-ctx 0.1.0's extension, kept working on top of Synchro.

0.1.0 code keeps running unchanged: ``SanicSynchroCtx(app)`` shares a store between the
workers through a manager, and ``app.ctx.synchro`` is then the *blocking* front end (0.1.0's
manager backend was synchronous: ``app.ctx.synchro.increment("counter")`` returns the new
value); ``SanicSynchroCtx(app, backend="redis", redis_client=client)`` puts the async front
end there (0.1.0's Redis backend was awaited). Each use emits a DeprecationWarning naming
the replacement, ``Synchro``. 0.1.0's Redis client came from the ``aioredis`` package, which
does not import on Python 3.11; its API lives on as ``redis.asyncio``, whose clients this
takes.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from .context import BlockingSynchroContext, SynchroContext
from .errors import SynchroValueError
from .extension import Synchro
from .interfaces.base import BaseSynchroInterface
from .interfaces.syncmanager import SyncManager

if TYPE_CHECKING:
    from sanic import Sanic

__all__ = ["SanicSynchroCtx"]

_MANAGER_BACKENDS = ("syncmanager", "sync_manager", "manager")


class SanicSynchroCtx:
    """Deprecated: ``Synchro(app)`` (see the migration guide). 0.1.0's signature and
    behaviour, on top of :class:`~sanic_synchro_ctx.Synchro`."""

    def __init__(
        self,
        app: Sanic[Any, Any],
        backend: str = "syncmanager",
        redis_client: Any = None,
        **_ignored: Any,
    ) -> None:
        warnings.warn(
            "SanicSynchroCtx is deprecated: use Synchro(app) (a SyncManager shared by all "
            "workers) or Synchro(app, interface=AIORedis(client)); with Synchro, "
            "app.ctx.synchro is the async front end and request.ctx.synchro follows the "
            "handler (see the migration guide)",
            DeprecationWarning,
            stacklevel=2,
        )
        interface: BaseSynchroInterface
        if backend in _MANAGER_BACKENDS:
            interface = SyncManager()
            front = "blocking"
        elif backend == "redis":
            if redis_client is None:
                raise SynchroValueError('backend="redis" needs redis_client=')
            from .interfaces.redis import AIORedis

            interface = AIORedis(redis_client)
            front = "async"
        else:
            raise SynchroValueError(
                f'unknown backend {backend!r}: "syncmanager" or "redis" (or use Synchro)'
            )
        #: The Synchro doing the work.
        self.synchro = Synchro()
        self.synchro._app_front = front
        self.synchro.init_app(app, interface=interface)
        self.app = app

    @property
    def context(self) -> SynchroContext | BlockingSynchroContext:
        """What ``app.ctx.synchro`` holds."""
        front: SynchroContext | BlockingSynchroContext = self.app.ctx.synchro
        return front
