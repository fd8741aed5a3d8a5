"""Where the embedded manager of a running app listens, for other processes of its user.

The app's main process writes two files into this user's private runtime directory
(``$TMPDIR/sanic-synchro-<uid>``, mode 0700, refused if anyone else could enter it): the
manager's socket path, and its authkey in a file of mode 0600; both named after the app
and the Synchro (``shop.synchro.address``), both removed when the app stops. So that
``connect("manager://", app="shop")`` and ``python -m sanic_synchro_ctx get KEY --app
shop`` find it. Another user finds nothing (their runtime directory is their own), and
could not enter the manager's private directory anyway.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from urllib.parse import quote

from ...errors import SynchroConnectionError
from .process import runtime_directory

__all__ = ["find", "publish"]


def _paths(app: str, name: str) -> tuple[str, str]:
    base = os.path.join(runtime_directory(), f"{quote(app, safe='')}.{quote(name, safe='')}")
    return base + ".address", base + ".authkey"


def _write(path: str, data: bytes) -> None:
    """``data`` into ``path`` (mode 0600), whole or not at all."""
    staging = f"{path}.{os.getpid()}.new"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(staging, path)


def publish(app: str, name: str, address: str, authkey: bytes) -> Callable[[], None]:
    """Publish the manager of (``app``, ``name``); the callable removes it again (only if
    the files still name this manager: a later start of the same app may have replaced
    them)."""
    address_path, key_path = _paths(app, name)
    _write(key_path, authkey)
    _write(address_path, address.encode("utf-8"))

    def withdraw() -> None:
        with contextlib.suppress(OSError):
            with open(address_path, "rb") as handle:
                if handle.read().decode("utf-8") != address:
                    return
            os.unlink(address_path)
            os.unlink(key_path)

    return withdraw


def find(app: str, name: str) -> tuple[str, str]:
    """(socket path, path of the authkey file) of the running app's manager;
    SynchroConnectionError naming what is missing."""
    address_path, key_path = _paths(app, name)
    try:
        with open(address_path, "rb") as handle:
            address = handle.read().decode("utf-8")
        os.stat(key_path)  # read by the interface: here only whether it is there
    except FileNotFoundError:
        raise SynchroConnectionError(
            f"no running app {app!r} (Synchro {name!r}) of this user publishes an embedded "
            f"manager in {os.path.dirname(address_path)}: start the app (with its main "
            "process: not --single-process), or give manager:///path.sock?authkey_file=..."
        ) from None
    return address, key_path
