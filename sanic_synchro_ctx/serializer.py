"""Serializers: how values become the bytes an interface stores.

Every serializer writes integers as plain ASCII decimal (``b"42"``). That is what lets
``increment`` run atomically on the server (Redis ``INCRBY``, the manager's own counter
code) and what keeps a counter readable by other tools (``redis-cli GET``).

:class:`JSONSerializer` is the default. It writes canonical JSON (sorted keys, no spaces,
ASCII only), so ``compare_and_set`` can compare stored bytes and dict order never matters.
:class:`PickleSerializer` is opt-in for trusted deployments: every payload is signed with
HMAC-SHA256 and a payload with a bad signature is refused, never unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
import re
from typing import Any

from .errors import SynchroSerializationError, SynchroValueError

__all__ = ["MAX_DEPTH", "JSONSerializer", "PickleSerializer", "Serializer"]

#: Deepest nesting of lists and dicts a JSON value may have. Every write checks it, so every
#: stored value can be decoded by any reader, even one already deep in its own call stack
#: (decoding recurses once per level, and a few hundred levels would hit Python's limit).
MAX_DEPTH = 64

_JSON_SCALARS = (str, int, float, bool, type(None))


class Serializer:
    """Turns values into bytes and back. Subclass to write your own.

    ``dumps`` must write ``int`` values (not ``bool``) as ASCII decimal, and must raise
    :class:`~sanic_synchro_ctx.SynchroSerializationError` for values it cannot carry.
    ``loads`` raises the same error for bytes it cannot read.
    """

    def dumps(self, value: Any) -> bytes:
        raise NotImplementedError

    def loads(self, data: bytes) -> Any:
        raise NotImplementedError


_SCALAR_TYPES = frozenset(_JSON_SCALARS)
#: A JSON string with nothing escaped: printable ASCII but the quote and the backslash.
_PLAIN_STRING = re.compile(rb'"[\x20\x21\x23-\x5b\x5d-\x7e]*"')


def _too_deep() -> SynchroValueError:
    return SynchroValueError(f"value is nested too deeply: at most {MAX_DEPTH} levels")


def _check_containers(value: Any, depth: int = 1) -> None:
    """Refuse dict keys that are not str (JSON would silently turn ``{1: "a"}`` into
    ``{"1": "a"}``) and nesting deeper than :data:`MAX_DEPTH`.

    Runs after the encoder accepted the value (so it is finite and acyclic); scalars are
    skipped by exact type, which keeps the walk cheap for typical values.
    """
    if depth > MAX_DEPTH:
        raise _too_deep()
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                raise SynchroSerializationError(
                    f"dict keys must be str to be stored as JSON, got {type(key).__name__}"
                )
            if type(item) not in _SCALAR_TYPES:
                _check_containers(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            if type(item) not in _SCALAR_TYPES:
                _check_containers(item, depth + 1)


def _plain(text: str) -> bool:
    """No character the JSON encoder would escape (with isascii and isprintable checked)."""
    return '"' not in text and "\\" not in text


def _int_text(value: int) -> bytes:
    """An int in decimal; Python refuses to write one of more than 4,300 digits."""
    try:
        return str(value).encode("ascii")
    except ValueError as exc:
        raise SynchroSerializationError(f"int cannot be stored: {exc}") from None


class JSONSerializer(Serializer):
    """Canonical JSON: None, bool, int, float (finite), str, list/tuple, dict with str keys."""

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder(
            ensure_ascii=True, allow_nan=False, sort_keys=True, separators=(",", ":")
        )
        self._decode = json.JSONDecoder().decode

    def dumps(self, value: Any) -> bytes:
        kind = type(value)
        if kind is int:
            return _int_text(value)
        if kind is str and value.isascii() and value.isprintable() and _plain(value):
            # what the encoder writes for such a string, without the encoder's detour
            plain: str = value
            return b'"' + plain.encode("ascii") + b'"'
        try:
            text = self._encoder.encode(value)
        except RecursionError:
            raise _too_deep() from None
        except (TypeError, ValueError) as exc:
            raise SynchroSerializationError(
                f"value of type {type(value).__name__} cannot be stored as JSON: {exc}"
            ) from exc
        if type(value) not in _SCALAR_TYPES:
            _check_containers(value)
        return text.encode("ascii")

    def loads(self, data: bytes) -> Any:
        # Fast paths for what the serializer writes most, exactly as json would read it:
        # a canonical int (no sign but "-", no leading zero) and a string without escapes.
        if data.isdigit():
            if data[0] != 48 or len(data) == 1:  # b"0"
                return int(data)
        elif data[:1] == b"-" and data[1:].isdigit() and data[1] != 48:
            return int(data)
        elif data[:1] == b'"' and _PLAIN_STRING.fullmatch(data):
            return data[1:-1].decode("ascii")
        try:
            return self._decode(data.decode("utf-8"))
        except (ValueError, TypeError) as exc:
            raise SynchroSerializationError(f"stored data is not valid JSON: {exc}") from exc


class PickleSerializer(Serializer):
    """Signed pickle, for values JSON cannot carry. Opt-in: only for a trusted deployment.

    ``secret`` signs every payload (HMAC-SHA256); all processes sharing the store must use
    the same secret. Payloads whose signature does not match are refused, so a party that
    can write to the store but does not know the secret cannot make you unpickle its data.
    ``compare_and_set`` compares pickled bytes: equal values built differently may differ.
    """

    _MARK = b"P"
    _DIGEST = 32

    def __init__(self, secret: bytes | str, *, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(key) < 16:
            raise ValueError("PickleSerializer secret must be at least 16 bytes")
        self._key = key
        self._protocol = protocol

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def dumps(self, value: Any) -> bytes:
        if type(value) is int:
            return _int_text(value)
        try:
            payload = pickle.dumps(value, protocol=self._protocol)
        except Exception as exc:
            raise SynchroSerializationError(
                f"value of type {type(value).__name__} cannot be pickled: {exc}"
            ) from exc
        return self._MARK + self._sign(payload) + payload

    def loads(self, data: bytes) -> Any:
        if data[:1] != self._MARK:
            try:
                return int(data)
            except ValueError:
                raise SynchroSerializationError("stored data is not a signed pickle") from None
        mac, payload = data[1 : 1 + self._DIGEST], data[1 + self._DIGEST :]
        if not hmac.compare_digest(mac, self._sign(payload)):
            raise SynchroSerializationError("stored pickle has a bad signature; refused")
        return pickle.loads(payload)
