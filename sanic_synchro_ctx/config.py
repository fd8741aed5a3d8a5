"""Interfaces from URLs: one string per backend, for configuration and the environment.

:func:`interface_from_url` builds the interface a URL names; nothing connects until the
interface starts (as with an interface built in code). ``Synchro(app)`` without
``interface=`` builds its interface from ``app.config.SYNCHRO_URL``, which Sanic fills from
the ``SANIC_SYNCHRO_URL`` environment variable (default ``manager://``, the embedded
manager). Query parameters are interface options (``?timeout=2&prefix=shop``); keyword
options given to the function win over them. A URL's password never appears in an error
message or a repr.

=====================================  ==================================================
URL                                    interface
=====================================  ==================================================
``manager://``                         ``SyncManager()``: the embedded manager (default)
``manager:///run/app/synchro.sock``    ``SyncManager(address=...)``: a running manager;
                                       the authkey from ``?authkey_file=`` or the
                                       environment
``memory://``                          ``InMemory()``
``redis://[:password@]host:port/db``   ``AIORedis.from_url(...)`` (``rediss://``: TLS)
``redis+cluster://host:port``          ``AIORedis.from_url(..., cluster=True)``
``redis+sentinel://h1:p1,h2:p2/svc/db`` ``AIORedis.from_sentinel([(h1, p1), ...], "svc")``
``asyncio-redis://[:pw@]host:port/db`` ``AsyncioRedis(...)``
``memcached://host:port``              ``Memcache(host, port)``
``memcached://h1:p1,h2:p2``            ``Memcache(servers=[(h1, p1), (h2, p2)])``
``lmdb:///path/to/dir``                ``LMDB(path)`` (``lmdb://``: a private file that
                                       lives as long as the app)
=====================================  ==================================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit, urlunsplit

from .errors import SynchroValueError
from .interfaces.base import BaseSynchroInterface
from .masking import check_userinfo, mask_password

__all__ = ["DEFAULT_URL", "SCHEMES", "interface_from_url", "mask_password", "register_scheme"]

#: Packages add URL schemes here: ``[project.entry-points."sanic_synchro_ctx.schemes"]``
#: ``myscheme = "mypackage.module:builder"`` (see :func:`register_scheme`).
ENTRY_POINTS = "sanic_synchro_ctx.schemes"

#: What ``Synchro(app)`` uses when ``app.config`` names no URL.
DEFAULT_URL = "manager://"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


def _seconds(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


#: Options every interface takes, and how a query string value becomes one.
_COMMON: dict[str, Callable[[str], Any]] = {"prefix": str, "max_value_size": int}
_BATCHING: dict[str, Callable[[str], Any]] = {"batching": _boolean, "max_batch": int}
#: redis-py connection options a ``redis://`` URL may carry (passed to redis-py).
_REDIS_PY: dict[str, Callable[[str], Any]] = {
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "max_connections": int,
    "health_check_interval": int,
    "client_name": str,
    "ssl_cert_reqs": str,
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_check_hostname": _boolean,
}

#: Asking Redis replicas to acknowledge writes (AIORedis's WAIT).
_REPLICAS: dict[str, Callable[[str], Any]] = {"wait_replicas": int, "wait_timeout": float}

#: Every scheme, and the options it takes (``serializer`` is accepted as a keyword
#: everywhere: it cannot be written in a URL).
SCHEMES: dict[str, dict[str, Callable[[str], Any]]] = {
    "manager": {**_COMMON, **_BATCHING, "timeout": _seconds, "authkey_file": str},
    "memory": {**_COMMON},
    "redis": {**_COMMON, **_BATCHING, **_REDIS_PY, **_REPLICAS, "timeout": _seconds},
    "rediss": {**_COMMON, **_BATCHING, **_REDIS_PY, **_REPLICAS, "timeout": _seconds},
    "redis+sentinel": {**_COMMON, **_BATCHING, **_REDIS_PY, **_REPLICAS, "timeout": _seconds},
    "redis+cluster": {**_COMMON, **_BATCHING, **_REDIS_PY, "timeout": _seconds},
    "rediss+cluster": {**_COMMON, **_BATCHING, **_REDIS_PY, "timeout": _seconds},
    "asyncio-redis": {
        **_COMMON,
        **_BATCHING,
        "timeout": _seconds,
        "connect_timeout": float,
        "poolsize": int,
    },
    "memcached": {**_COMMON, **_BATCHING, "timeout": _seconds, "pool_size": int},
    "lmdb": {**_COMMON, "map_size": int, "durable": _boolean},
}


def interface_from_url(url: str, **options: Any) -> BaseSynchroInterface:
    """The interface ``url`` names (see the module's table), with ``options``."""
    if not isinstance(url, str) or not url.strip():
        raise SynchroValueError("a synchro URL must be a non-empty str, such as 'manager://'")
    shown = mask_password(url)
    check_userinfo(url)
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise SynchroValueError(f"cannot read synchro URL {shown!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        _load_entry_point(scheme)
    if scheme not in SCHEMES:
        raise SynchroValueError(
            f"unknown synchro URL scheme {parts.scheme!r} in {shown!r}; valid schemes: "
            + ", ".join(f"{name}://" for name in SCHEMES)
        )
    try:
        # a port that is not a number, or out of range, raises here (several memcached
        # servers are read by their builder)
        several = scheme in ("memcached", "redis+sentinel") and "," in parts.netloc
        port = None if several else parts.port
    except ValueError as exc:
        raise SynchroValueError(f"cannot read synchro URL {shown!r}: {exc}") from None
    allowed = SCHEMES[scheme]
    given = _query_options(parts, allowed, shown)
    for name in options:
        if name not in allowed and name != "serializer":
            raise _unknown(name, scheme, allowed, shown)
    given.update(options)
    return _BUILDERS[scheme](parts, port, given, shown)


def _unknown(name: str, scheme: str, allowed: Mapping[str, Any], shown: str) -> SynchroValueError:
    return SynchroValueError(
        f"unknown option {name!r} for {scheme}:// in {shown!r}; valid options: "
        + ", ".join(sorted([*allowed, "serializer"]))
    )


def _query_options(
    parts: SplitResult, allowed: Mapping[str, Callable[[str], Any]], shown: str
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, text in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        convert = allowed.get(name)
        if convert is None:
            raise _unknown(name, parts.scheme.lower(), allowed, shown)
        try:
            found[name] = convert(text)
        except ValueError as exc:
            raise SynchroValueError(f"option {name!r} of {shown!r}: {exc}") from None
    return found


def _no_host(parts: SplitResult, shown: str) -> None:
    if parts.netloc:
        raise SynchroValueError(
            f"{shown!r}: {parts.scheme}:// takes no host (write {parts.scheme}:///path for a path)"
        )


def _manager(
    parts: SplitResult, port: int | None, options: dict[str, Any], shown: str
) -> BaseSynchroInterface:
    from .interfaces.syncmanager import SyncManager

    _no_host(parts, shown)
    path = unquote(parts.path)
    if not path or path == "/":
        if "authkey_file" in options:
            raise SynchroValueError(
                f"{shown!r}: authkey_file is for a running manager (manager:///path.sock)"
            )
        return SyncManager(**options)
    return SyncManager(path, **options)


def _memory(
    parts: SplitResult, port: int | None, options: dict[str, Any], shown: str
) -> BaseSynchroInterface:
    from .interfaces.memory import InMemory

    _no_host(parts, shown)
    return InMemory(**options)


def _redis(
    parts: SplitResult, port: int | None, options: dict[str, Any], shown: str
) -> BaseSynchroInterface:
    from .interfaces.redis import AIORedis

    scheme, _, kind = parts.scheme.lower().partition("+")
    _socket_timeouts(options)
    # redis-py reads the URL itself (host, port, db, password, TLS): without our options
    plain = urlunsplit((scheme, parts.netloc, parts.path, "", ""))
    return AIORedis.from_url(plain, cluster=kind == "cluster", **options)


def _socket_timeouts(options: dict[str, Any]) -> None:
    """A URL's ``timeout`` as redis-py's two socket timeouts (unless given themselves)."""
    timeout = options.pop("timeout", None)
    if timeout is not None:
        options.setdefault("socket_timeout", timeout)
        options.setdefault("socket_connect_timeout", timeout)


def _places(hosts: str, default_port: int, what: str, shown: str) -> list[tuple[str, int]]:
    """``h1:p1,h2:p2`` as (host, port) pairs; SynchroValueError naming a bad one."""
    places = []
    for place in hosts.split(","):
        try:
            one = urlsplit(f"//{place}")
            port = one.port or default_port
        except ValueError as exc:
            raise SynchroValueError(f"{what} {place!r} of {shown!r}: {exc}") from None
        if not one.hostname:
            raise SynchroValueError(f"{what} {place!r} of {shown!r}: no host")
        places.append((one.hostname, port))
    return places


def _database(text: str, shown: str) -> int:
    """The database a URL's path names (none: 0); SynchroValueError unless one number."""
    text = text or "0"
    if not (text.isascii() and text.isdigit()):
        raise SynchroValueError(f"{shown!r}: the database must be a number, not {text!r}")
    return int(text)


def _redis_sentinel(
    parts: SplitResult, port: int | None, options: dict[str, Any], shown: str
) -> BaseSynchroInterface:
    from .interfaces.redis import AIORedis

    userinfo, _, places = parts.netloc.rpartition("@")
    if userinfo:
        user, _, password = userinfo.partition(":")
        if user:
            options.setdefault("username", unquote(user))
        if password:
            options.setdefault("password", unquote(password))
    sentinels = _places(places, 26379, "sentinel", shown)
    service, _, db_text = parts.path.strip("/").partition("/")
    if not service:
        raise SynchroValueError(
            f"{shown!r}: name the service: redis+sentinel://host:port,.../service/db"
        )
    db = _database(db_text, shown)
    _socket_timeouts(options)
    return AIORedis.from_sentinel(sentinels, service, db=db, **options)


def _asyncio_redis(
    parts: SplitResult, port: int | None, options: dict[str, Any], shown: str
) -> BaseSynchroInterface:
    from .interfaces.redis import AsyncioRedis

    db = _database(parts.path.strip("/"), shown)
    password = unquote(parts.password) if parts.password else None
    return AsyncioRedis(parts.hostname or "127.0.0.1", port or 6379, db, password, **options)


def _memcached(
    parts: SplitResult, port: int | None, options: dict[str, Any], shown: str
) -> BaseSynchroInterface:
    from .interfaces.memcache import Memcache

    if parts.path not in ("", "/"):
        raise SynchroValueError(f"{shown!r}: memcached:// takes no path")
    if "," not in parts.netloc:
        return Memcache(parts.hostname or "127.0.0.1", port or 11211, **options)
    return Memcache(servers=_places(parts.netloc, 11211, "server", shown), **options)


def _lmdb(
    parts: SplitResult, port: int | None, options: dict[str, Any], shown: str
) -> BaseSynchroInterface:
    from .interfaces.lmdb import LMDB

    _no_host(parts, shown)
    path = unquote(parts.path)
    return LMDB(path if path not in ("", "/") else None, **options)


_BUILDERS: dict[
    str, Callable[[SplitResult, int | None, dict[str, Any], str], BaseSynchroInterface]
] = {
    "manager": _manager,
    "memory": _memory,
    "redis": _redis,
    "rediss": _redis,
    "redis+cluster": _redis,
    "rediss+cluster": _redis,
    "asyncio-redis": _asyncio_redis,
    "memcached": _memcached,
    "redis+sentinel": _redis_sentinel,
    "lmdb": _lmdb,
}


def register_scheme(
    scheme: str,
    builder: Callable[..., BaseSynchroInterface],
    *,
    options: Mapping[str, Callable[[str], Any]] | None = None,
) -> None:
    """Make ``interface_from_url`` (and ``SANIC_SYNCHRO_URL``, ``connect()``, the command
    line) build interfaces of a URL scheme of a package's own.

    ``builder(url, **options)`` gets the URL without its query string and the options:
    those of the query string, each converted by its function in ``options`` (a query
    option not named there is refused, listing the valid ones), ``prefix`` and
    ``max_value_size`` (every interface takes them), and the keyword options of the call.
    A scheme this package builds itself cannot be replaced. A package can also declare its
    schemes as entry points of the group ``sanic_synchro_ctx.schemes`` (name: the scheme;
    value: ``module:builder``): they are registered when first asked for.
    """
    if not isinstance(scheme, str) or not _SCHEME.fullmatch(scheme):
        raise SynchroValueError(f"{scheme!r} is not a URL scheme (letters, digits, + - .)")
    name = scheme.lower()
    if name in _BUILDERS and name not in _REGISTERED:
        raise SynchroValueError(f"{name}:// is built in; it cannot be replaced")
    if not callable(builder):
        raise SynchroValueError(f"the builder of {name}:// must be callable, not {builder!r}")
    SCHEMES[name] = {**_COMMON, **(options or {})}
    _REGISTERED.add(name)

    def build(
        parts: SplitResult, port: int | None, given: dict[str, Any], shown: str
    ) -> BaseSynchroInterface:
        plain = urlunsplit((parts.scheme, parts.netloc, parts.path, "", parts.fragment))
        made = builder(plain, **given)
        if not isinstance(made, BaseSynchroInterface):
            raise SynchroValueError(
                f"the builder of {name}:// returned {type(made).__name__}, not an interface"
            )
        return made

    _BUILDERS[name] = build


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
#: Schemes added by register_scheme() (which may be registered again).
_REGISTERED: set[str] = set()


def _load_entry_point(scheme: str) -> None:
    """Register ``scheme`` from the entry point of that name, if a package declares one."""
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINTS):
        if point.name.lower() == scheme:
            register_scheme(scheme, point.load())
            return
