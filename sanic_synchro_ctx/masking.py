"""URLs shown without their password, and URLs whose password would be misread refused.

A URL's user information ends at its last ``@``. A password holding ``/``, ``?`` or ``#``
unencoded ends the URL's host part early for every URL parser (``urllib``, redis-py's),
so pieces of it would be read as a path, a query or a fragment, and an error message
naming one of those would show them: such a URL is refused before it is read, with the
fix (percent-encode them)."""

from __future__ import annotations

from .errors import SynchroValueError

__all__ = ["check_userinfo", "mask_password"]

_BREAKS = "/?#"


def _split(url: str) -> tuple[str, str, str] | None:
    """(``scheme://``, user information, the rest after its ``@``), or None without one."""
    scheme, sep, rest = url.partition("://")
    if not sep or rest.startswith("/"):
        return None  # no host part (lmdb:///path, manager:///path.sock)
    userinfo, at, after = rest.rpartition("@")
    if not at:
        return None
    return scheme + sep, userinfo, after


def mask_password(url: str) -> str:
    """``url`` with any password replaced by ``***`` (the user name stays)."""
    parts = _split(url)
    if parts is None:
        return url
    head, userinfo, after = parts
    user, colon, _ = userinfo.partition(":")
    if not colon:
        return f"{head}***@{after}"  # a lone field may be a password (redis://secret@host)
    return f"{head}{user}:***@{after}"


def check_userinfo(url: str) -> None:
    """SynchroValueError when ``url``'s user information holds ``/``, ``?`` or ``#``."""
    parts = _split(url)
    if parts is not None and any(char in parts[1] for char in _BREAKS):
        raise SynchroValueError(
            f"{mask_password(url)!r}: the password or user name holds '/', '?' or '#', "
            "which end a URL's host part: percent-encode them (%2F, %3F, %23)"
        )
