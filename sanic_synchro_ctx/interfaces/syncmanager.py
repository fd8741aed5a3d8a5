"""SyncManager: the default interface, a manager process shared by all workers.

In ``main_process_start`` it starts a manager process (``python -m sanic_synchro_ctx
serve``) on an AF_UNIX socket in a private 0700 directory with a random authkey, and puts a
proxy to its Store into ``app.shared_ctx``; every worker picks the proxy up before it
serves. Each operation is one call of a Store method: one round trip, run inside the manager
under its lock. The manager stops in ``main_process_stop``.

Where no main process runs (``--single-process``, the sanic-testing clients, ASGI) the
Store lives in this process, created once and kept for the interface's lifetime. When
``init_app`` runs inside a worker's listener (no main-process listener was registered),
the workers of one main process meet at a manager keyed by that main process.
With ``address`` and ``authkey`` it connects to a manager started elsewhere, such as
``python -m sanic_synchro_ctx serve``. ``timeout`` bounds the wait for each answer
(default 30 s); a manager that does not answer in time gives SynchroConnectionError.
"""

from __future__ import annotations

import os
import threading
from multiprocessing import AuthenticationError
from typing import TYPE_CHECKING, Any

from ..checks import check_timeout
from ..errors import SynchroError, SynchroValueError
from ..launcher import AUTHKEY_ENV, ManagerProcess, rendezvous
from ..manager import Address, StoreClient, connect, format_address
from ..serializer import Serializer
from ..store import Store
from .base import DEFAULT_MAX_VALUE_SIZE
from .storebacked import StoreBackedInterface

if TYPE_CHECKING:
    from sanic import Sanic

__all__ = ["SyncManager"]

# Sanic names its server worker processes "Sanic-Server-<n>-<m>" (SANIC_WORKER_NAME).
_SERVER_WORKER_PREFIX = "Sanic-Server"


def _in_server_worker() -> bool:
    return os.environ.get("SANIC_WORKER_NAME", "").startswith(_SERVER_WORKER_PREFIX)


def _authkey(authkey: bytes | str | None) -> bytes:
    if authkey is None:
        from_env = os.environ.get(AUTHKEY_ENV, "").strip()
        if not from_env:
            raise SynchroValueError(
                f"SyncManager(address=...) needs authkey= or the {AUTHKEY_ENV} environment variable"
            )
        return from_env.encode("utf-8")
    if isinstance(authkey, str):
        authkey = authkey.encode("utf-8")
    if not isinstance(authkey, bytes) or not authkey:
        raise SynchroValueError("authkey must be non-empty bytes or str")
    return authkey


class SyncManager(StoreBackedInterface):
    """The context in a manager process shared by every worker of the app (the default)."""

    connection_errors = (OSError, EOFError, AuthenticationError)

    def __init__(
        self,
        address: Address | None = None,
        authkey: bytes | str | None = None,
        *,
        prefix: str | None = None,
        serializer: Serializer | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        timeout: float | None = 30.0,
    ) -> None:
        super().__init__(prefix=prefix, serializer=serializer, max_value_size=max_value_size)
        self._timeout = check_timeout(timeout)
        if address is None and authkey is not None:
            raise SynchroValueError("authkey= is only meaningful with address=")
        self._external = address is not None
        self._endpoint: tuple[Address, bytes] | None = (
            (address, _authkey(authkey)) if address is not None else None
        )
        self._store: Store | StoreClient | None = None
        self._process: ManagerProcess | None = None
        self._mutex = threading.Lock()

    @property
    def address(self) -> Address | None:
        """The manager's address, or None while the Store lives in this process (or is unset)."""
        return None if self._endpoint is None else self._endpoint[0]

    def _backend(self) -> Store:
        store = self._store
        if store is None:
            store = self._resolve()
        # A StoreClient has the Store's methods, run in the manager process.
        return store  # type: ignore[return-value]

    def _resolve(self) -> Store | StoreClient:
        with self._mutex:
            if self._store is None:
                if self._endpoint is not None:
                    self._store = connect(*self._endpoint, timeout=self._timeout)
                elif _in_server_worker():
                    # A private Store here would silently diverge from the other workers.
                    raise SynchroError(
                        "SyncManager was used in a Sanic worker before the server started; "
                        "use it from listeners (before_server_start onwards) and handlers"
                    )
                else:
                    self._store = Store()
            return self._store

    def map_error(self, exc: Exception) -> SynchroError:
        if isinstance(exc, self.connection_errors) and self._endpoint is not None:
            self._store = None  # reconnect (and look the Store up again) on the next operation
        return super().map_error(exc)

    def _attach(self, proxy: Any) -> None:
        client = StoreClient.from_proxy(proxy, timeout=self._timeout)
        self._endpoint = (client.address, client.authkey)
        self._store = client

    # -- lifecycle ----------------------------------------------------------------------

    def on_main_process_start(self, app: Sanic[Any, Any], slot: str) -> None:
        if self._external:
            return
        self._process = ManagerProcess.start(watch_pid=os.getpid())
        self._endpoint = (self._process.address, self._process.authkey)
        client = connect(*self._endpoint, timeout=self._timeout)
        self._store = client
        setattr(app.shared_ctx, slot, client.proxy)

    def on_main_process_stop(self, app: Sanic[Any, Any], slot: str) -> None:
        self.close()

    def on_server_start(self, app: Sanic[Any, Any], slot: str) -> None:
        shared = getattr(app.shared_ctx, slot, None)
        if shared is not None:
            self._attach(shared)
        elif self._endpoint is not None or self._store is not None:
            return  # an external manager, or this process's Store from an earlier start
        elif _in_server_worker():
            self._endpoint = rendezvous(os.getppid())
            self._resolve()
        else:
            self._store = Store()

    def close(self) -> None:
        """Drop the connection (the next operation reconnects); stop a manager we started."""
        store, self._store = self._store, None
        if isinstance(store, StoreClient):
            store.close()
        elif store is not None:
            self._store = store  # this process's own Store: its data lives on
        process, self._process = self._process, None
        if process is not None:
            self._store = None
            self._endpoint = None
            process.stop()

    def __repr__(self) -> str:
        if self._endpoint is None:
            where = "in-process" if self._store is not None else "not started"
        else:
            where = format_address(self._endpoint[0])
        return f"SyncManager({where})"
