"""Serializers: how values become the bytes an interface stores.

Every serializer writes integers as plain ASCII decimal (``b"42"``). That is what lets
``increment`` run atomically on the server (Redis ``INCRBY``, the manager's own counter
code) and what keeps a counter readable by other tools (``redis-cli GET``).

:class:`JSONSerializer` is the default. It writes canonical JSON (sorted keys, no spaces,
ASCII only), so ``compare_and_set`` can compare stored bytes and dict order never matters.
With the ``orjson`` extra installed it lets orjson do the work wherever orjson's bytes are
provably the standard library's (see :class:`JSONSerializer`), so processes with and
without it store, compare and read exactly the same bytes.
:class:`PickleSerializer` is opt-in for trusted deployments: every payload is signed with
HMAC-SHA256 and a payload with a bad signature is refused, never unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
import re
from collections.abc import Callable
from typing import Any

from .errors import SynchroSerializationError, SynchroValueError, missing_client

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
_EXACT_SCALARS = frozenset((str, int, bool, type(None)))
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


def _orjson_writes_it(value: Any, depth: int = 1) -> bool:
    """Whether orjson writes ``value`` exactly as the standard encoder does (given that its
    output is then ASCII without a backslash or DEL, which :meth:`JSONSerializer.dumps`
    checks): only the exact JSON types but floats, dict keys of exact type str, and no
    deeper than :data:`MAX_DEPTH`.

    orjson also writes what the standard encoder refuses (enums, UUIDs, dataclasses,
    datetimes, numpy arrays), writes subclasses its own way, and formats floats differently
    (``1e-05`` is its ``1e-5``); all of those are left to the standard encoder.
    """
    if depth > MAX_DEPTH:
        return False
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return False
            if type(item) not in _EXACT_SCALARS and not _orjson_writes_it(item, depth + 1):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:
            if type(item) not in _EXACT_SCALARS and not _orjson_writes_it(item, depth + 1):
                return False
        return True
    return kind in _EXACT_SCALARS


#: Where orjson could read a number differently from the standard decoder: a float (its own
#: parser) or an int of 19 digits or more (past 64 bits orjson reads an int as a float).
#: Stored bytes mapped through this table turn every digit into "0", ".", "e" and "E" into
#: ".", and anything else into a space; they go to orjson only when neither "0." nor 19
#: zeros in a row shows up. A string holding such text ("v1.2") sends its value to the
#: standard decoder, which is only slower.
_NUMBER_SHAPE = bytes(
    48 if 48 <= byte <= 57 else 46 if byte in b".eE" else 32 for byte in range(256)
)
_LONG_INT = b"0" * 19


def _import_orjson() -> Any:
    try:
        import orjson
    except ImportError:
        raise missing_client("JSONSerializer(fast=True)", "orjson", "orjson", "orjson") from None
    return orjson


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
    """Canonical JSON: None, bool, int, float (finite), str, list/tuple, dict with str keys.

    ``fast``: whether orjson (the ``orjson`` extra) does the work where it can. None (the
    default) uses it when it is installed; True requires it; False never uses it. Either
    way the bytes are the same: orjson writes a value only when it is made of exact JSON
    types without floats and its output is ASCII with nothing escaped (otherwise the
    standard encoder writes it), and reads stored bytes only when no number in them could
    be a float or exceed 64 bits (otherwise the standard decoder reads them). So workers
    with and without orjson agree on every ``compare_and_set``.
    """

    def __init__(self, *, fast: bool | None = None) -> None:
        self._encoder = json.JSONEncoder(
            ensure_ascii=True, allow_nan=False, sort_keys=True, separators=(",", ":")
        )
        self._decode = json.JSONDecoder().decode
        self._fast_dumps: Callable[..., bytes] | None = None
        self._fast_loads: Callable[[bytes], Any] | None = None
        self._sort_keys = 0
        if fast is not False:
            try:
                orjson = _import_orjson()
            except ModuleNotFoundError:
                if fast:
                    raise
            else:
                self._fast_dumps = orjson.dumps
                self._fast_loads = orjson.loads
                self._sort_keys = orjson.OPT_SORT_KEYS

    @property
    def fast(self) -> bool:
        """Whether orjson does the work where its bytes are the standard library's."""
        return self._fast_dumps is not None

    def dumps(self, value: Any) -> bytes:
        kind = type(value)
        if kind is int:
            return _int_text(value)
        if kind is str and value.isascii() and value.isprintable() and _plain(value):
            # what the encoder writes for such a string, without the encoder's detour
            plain: str = value
            return b'"' + plain.encode("ascii") + b'"'
        if self._fast_dumps is not None and _orjson_writes_it(value):
            try:
                data = self._fast_dumps(value, option=self._sort_keys)
            except TypeError:  # an int past 64 bits, a str holding a lone surrogate
                pass
            else:
                if data.isascii() and data.find(b"\\") < 0 and data.find(b"\x7f") < 0:
                    return data
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
        if self._fast_loads is not None:
            shape = data.translate(_NUMBER_SHAPE)
            # find, not "in": "in" on bytes costs twice as much (it takes a buffer)
            if shape.find(b"0.") < 0 and shape.find(_LONG_INT) < 0:
                try:
                    return self._fast_loads(data)
                except ValueError:  # the standard decoder decides, and words the error
                    pass
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
