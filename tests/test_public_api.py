"""The public surface: exported names, typing marker, no eager optional imports."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import sanic_synchro_ctx

PUBLIC = {
    "AIORedis",
    "AsyncioRedis",
    "BaseSynchroInterface",
    "BlockingSynchroContext",
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
    "SynchroContext",
    "SynchroError",
    "SynchroInspector",
    "SynchroSerializationError",
    "SynchroTypeError",
    "SynchroUnsupported",
    "SynchroValueError",
    "__version__",
    "connect",
    "interface_from_url",
    "register_scheme",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(sanic_synchro_ctx.__all__) == PUBLIC
    assert len(sanic_synchro_ctx.__all__) == len(PUBLIC)
    for name in PUBLIC:
        assert hasattr(sanic_synchro_ctx, name)
    # Nothing else is exported: any other public attribute of the package is a submodule
    # (imported as a side effect), never a class or function that leaked.
    exported = {name for name in dir(sanic_synchro_ctx) if not name.startswith("_")}
    leaked = {
        name
        for name in exported - PUBLIC
        if not isinstance(getattr(sanic_synchro_ctx, name), types.ModuleType)
    }
    assert leaked == set()


def test_the_contract_is_enforced_at_instantiation() -> None:
    """A subclass missing a primitive fails when instantiated, naming what is missing."""

    class Incomplete(sanic_synchro_ctx.BaseSynchroInterface):
        def raw_get(self, key: str) -> Any:
            raise AssertionError("never called")

    with pytest.raises(TypeError, match="raw_increment"):
        Incomplete()  # type: ignore[abstract]


def test_package_is_typed() -> None:
    assert (Path(sanic_synchro_ctx.__file__).parent / "py.typed").is_file()


def test_importing_the_package_imports_no_server_or_client_library() -> None:
    """The manager process imports the package: it must stay light and need no extras."""
    code = (
        "import sys, sanic_synchro_ctx; "
        "print(sorted(m for m in ('sanic', 'redis', 'asyncio_redis', 'aiomcache', 'lmdb') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
