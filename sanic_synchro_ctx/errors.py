"""The exception tree every interface raises.

Client libraries raise their own exceptions; interfaces map them into this tree with
``raise ... from exc`` so that application code catches one documented family.
"""

from __future__ import annotations

__all__ = [
    "missing_client",
    "LockNotOwned",
    "LockTimeout",
    "SynchroConnectionError",
    "SynchroError",
    "SynchroSerializationError",
    "SynchroTypeError",
    "SynchroUnsupported",
    "SynchroValueError",
]


class SynchroError(Exception):
    """Base class of every error raised by sanic-synchro-ctx."""


class SynchroConnectionError(SynchroError):
    """The backend could not be reached, or the connection to it was lost."""


class SynchroTypeError(SynchroError, TypeError):
    """An argument or a stored value has the wrong type (non-str key, non-int step, ...)."""


class SynchroValueError(SynchroError, ValueError):
    """An argument has the right type but an invalid value (empty key, bad TTL, too large)."""


class SynchroSerializationError(SynchroError, TypeError):
    """A value cannot be carried by the serializer (for JSON: object(), set, bytes, NaN)."""


class SynchroUnsupported(SynchroError, NotImplementedError):
    """The interface cannot perform this operation (only ``Memcache.keys()``)."""


class LockTimeout(SynchroError):
    """A lock could not be acquired before its ``timeout`` passed."""


class LockNotOwned(SynchroError):
    """A lock was released by someone who does not hold it (never acquired, or lease expired)."""


def missing_client(interface: str, module: str, client: str, extra: str) -> ModuleNotFoundError:
    """The error for an interface whose optional client is not installed: it names the
    extra to install, and carries ``name`` (tools such as Sanic's CLI read it)."""
    return ModuleNotFoundError(
        f'{interface} needs {client}: pip install "sanic-synchro-ctx[{extra}]"', name=module
    )
