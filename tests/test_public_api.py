"""The public surface: exported names, typing marker, no eager optional imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sanic_synchro_ctx

PUBLIC = {
    "AIORedis",
    "AsyncioRedis",
    "BaseSynchroInterface",
    "InMemory",
    "LockNotOwned",
    "LockTimeout",
    "Memcache",
    "SyncManager",
    "Synchro",
    "SynchroConnectionError",
    "SynchroError",
    "SynchroSerializationError",
    "SynchroTypeError",
    "SynchroUnsupported",
    "SynchroValueError",
    "__version__",
}


def test_all_lists_exactly_the_public_names() -> None:
    assert set(sanic_synchro_ctx.__all__) == PUBLIC
    assert len(sanic_synchro_ctx.__all__) == len(PUBLIC)
    for name in PUBLIC:
        assert hasattr(sanic_synchro_ctx, name)
    exported = {name for name in dir(sanic_synchro_ctx) if not name.startswith("_")}
    modules = {"checks", "context", "errors", "extension", "interfaces", "launcher", "locks"}
    modules |= {"manager", "server", "framing", "batching", "bridge", "serializer", "store"}
    assert exported - modules - PUBLIC == set()


def test_package_is_typed() -> None:
    assert (Path(sanic_synchro_ctx.__file__).parent / "py.typed").is_file()


def test_importing_the_package_imports_no_server_or_client_library() -> None:
    """The manager process imports the package: it must stay light and need no extras."""
    code = (
        "import sys, sanic_synchro_ctx; "
        "print(sorted(m for m in ('sanic', 'redis', 'asyncio_redis', 'aiomcache') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
