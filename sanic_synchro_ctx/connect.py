"""The shared state from outside the app: scripts, cron jobs, other processes, tests.

``connect(target, app=..., name=..., prefix=...)`` returns the context object handlers get,
on the namespace the app uses: ``async with connect(url, app="shop") as ctx:`` (its
connections closed at the end), or blocking ``with connect(url, app="shop").sync as ctx:``.
``connect("manager://", app="shop")`` finds the embedded manager of the app ``shop`` running
on this machine for this user (:mod:`.interfaces.syncmanager.published`).
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

from .config import interface_from_url
from .context import SynchroContext
from .errors import SynchroTypeError, SynchroValueError
from .extension import default_prefix
from .interfaces.base import BaseSynchroInterface

__all__ = ["connect"]


def _namespace(app: str | None, name: str, prefix: str | None) -> str | None:
    if prefix is not None and app is not None:
        raise SynchroValueError("give app= (its default namespace) or prefix=, not both")
    if prefix is not None:
        if not isinstance(prefix, str) or not prefix:
            raise SynchroValueError("prefix must be a non-empty str")
        return prefix
    if app is None:
        return None
    if not isinstance(app, str) or not app:
        raise SynchroValueError("app must be the app's name, a non-empty str")
    if not isinstance(name, str) or not name:
        raise SynchroValueError("name must be the Synchro's name, a non-empty str")
    return default_prefix(app, name)


def connect(
    target: str | BaseSynchroInterface,
    *,
    app: str | None = None,
    name: str = "synchro",
    prefix: str | None = None,
) -> SynchroContext:
    """The context object on ``target`` (a URL, as ``interface_from_url`` reads it, or an
    interface), in the namespace of app ``app`` (the one ``Synchro(app)`` named ``name``
    uses by default) or in namespace ``prefix`` (what ``SYNCHRO_PREFIX`` or an interface's
    ``prefix=`` named). ``manager://`` without a path means the embedded manager of the
    running app ``app``. Nothing connects until the first operation."""
    namespace = _namespace(app, name, prefix)
    if isinstance(target, str):
        interface = _from_url(target, namespace, app, name)
    elif isinstance(target, BaseSynchroInterface):
        interface = target
        if namespace is not None:
            interface.bind(namespace)
    else:
        raise SynchroTypeError(
            f"connect() takes a URL or an interface, not {type(target).__name__}"
        )
    if interface.prefix is None:
        raise SynchroValueError(
            "name the namespace: connect(..., app='<the app's name>') or prefix=..."
        )
    _refuse_private(interface)
    interface.attach(None)
    return SynchroContext(interface)


def _refuse_private(interface: BaseSynchroInterface) -> None:
    """SynchroValueError for an interface that would give this process a store of its own
    where the caller means an app's: a SyncManager with no address, an LMDB with no path."""
    from .interfaces.lmdb import LMDB
    from .interfaces.syncmanager import SyncManager

    if isinstance(interface, SyncManager) and interface.address is None:
        raise SynchroValueError(
            "SyncManager() without an address would be a store of this process alone: use "
            "connect('manager://', app=...) for a running app's manager, or "
            "SyncManager(address=..., authkey=...)"
        )
    if isinstance(interface, LMDB) and interface.path is None:
        raise SynchroValueError(
            "LMDB() without a path would be a store of this process alone: give the path "
            "the app uses (lmdb:///path)"
        )


def _from_url(url: str, namespace: str | None, app: str | None, name: str) -> BaseSynchroInterface:
    parts = urlsplit(url.strip())
    if parts.scheme.lower() == "manager" and not parts.netloc and parts.path in ("", "/"):
        from .interfaces.syncmanager.published import find

        if app is None:
            raise SynchroValueError(
                "manager:// without a path is the embedded manager of a running app: "
                "give app='<the app's name>'"
            )
        address, key_path = find(app, name)
        query = "&".join(filter(None, [f"authkey_file={quote(key_path)}", parts.query]))
        url = urlunsplit(("manager", "", address, query, ""))
    if namespace is None:
        return interface_from_url(url)
    return interface_from_url(url, prefix=namespace)
