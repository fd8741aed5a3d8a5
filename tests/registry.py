"""The interfaces the suites run against: one line per interface.

Each entry says how to build the interface on the session's servers (``servers``: what
the factory may ask for, by fixture name) and what the tests expect of it: a fixed table,
never read from the code under test. The contract, bad-input, model, batching,
cancellation and multi-worker suites are parametrized over it; adding an interface is its
package, one line here, and a server fixture in ``conftest.py`` if it needs a server.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import valkey.asyncio

from sanic_synchro_ctx import LMDB, AIORedis, AsyncioRedis, InMemory, Memcache, SyncManager
from sanic_synchro_ctx.interfaces.base import BaseSynchroInterface

#: Given a fixture getter and options, build the interface.
Factory = Callable[[Callable[[str], Any], dict[str, Any]], BaseSynchroInterface]


@dataclass(frozen=True)
class Kind:
    """One interface as the tests know it."""

    name: str
    make: Factory
    #: Expected capabilities (checked against what the interface declares).
    lists_keys: bool = True
    ttl_resolution: float = 0.0
    shares_between_processes: bool = True
    #: Interfaces the factory builds share one backend (a server, a file): two apps on it.
    shared: bool = True
    #: Operations go over a connection (they can be cancelled mid-way, time out, batch).
    network: bool = True
    #: The workers' app builds it from SYNCHRO_INTERFACE (multi-worker suites).
    workers: bool = True
    #: Publish/subscribe works (else SynchroUnsupported).
    notifies: bool = True


def _example(fixture: Callable[[str], Any], options: dict[str, Any]) -> BaseSynchroInterface:
    """The complete interface of the docs page "Writing an interface"."""
    path = Path(__file__).resolve().parent.parent / "examples" / "custom_interface.py"
    spec = importlib.util.spec_from_file_location("custom_interface", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    made: BaseSynchroInterface = module.DictInterface(**options)
    return made


def _manager(fixture: Callable[[str], Any], options: dict[str, Any]) -> SyncManager:
    process = fixture("manager_process")
    return SyncManager(process.address, process.authkey, **options)


# fmt: off
REGISTRY: list[Kind] = [
    Kind("inmemory", lambda f, o: InMemory(**o), shares_between_processes=False, shared=False, network=False, workers=False),  # noqa: E501
    Kind("syncmanager", _manager),
    Kind("aioredis", lambda f, o: AIORedis.from_url(f("redis_server").url, **o)),
    Kind("aioredis-cluster", lambda f, o: AIORedis.from_url(f("redis_cluster").url, cluster=True, **o)),  # noqa: E501
    Kind("aioredis-valkey", lambda f, o: AIORedis(valkey.asyncio.Valkey.from_url(f("redis_server").url, socket_timeout=5), **o), workers=False),  # noqa: E501
    Kind("aioredis-sentinel", lambda f, o: AIORedis.from_sentinel(f("redis_sentinels").addresses, "main", **o), workers=False),  # noqa: E501
    Kind("asyncio_redis", lambda f, o: AsyncioRedis(port=f("redis_server").port, **o)),
    Kind("memcache", lambda f, o: Memcache(port=f("memcached_server").port, **o), lists_keys=False, ttl_resolution=1.0, notifies=False),  # noqa: E501
    Kind("memcache-3", lambda f, o: Memcache(servers=[("127.0.0.1", s.port) for s in f("memcached_servers")], **o), lists_keys=False, ttl_resolution=1.0, workers=False, notifies=False),  # noqa: E501
    Kind("lmdb", lambda f, o: LMDB(**o), shared=False, network=False, notifies=False),
    Kind("lmdb-file", lambda f, o: LMDB(str(f("tmp_path") / "db"), **o), network=False, workers=False, notifies=False),  # noqa: E501
    Kind("example-dict", _example, shares_between_processes=False, shared=False, network=False, workers=False, notifies=False),  # noqa: E501
]
# fmt: on

KINDS = {kind.name: kind for kind in REGISTRY}
#: The class that must serve the workers' app of each multi-worker kind: a worker that
#: serves another one (a fallback to the default) fails the test.
SERVED_BY = {
    "syncmanager": "SyncManager",
    "aioredis": "AIORedis",
    "aioredis-cluster": "AIORedis",
    "asyncio_redis": "AsyncioRedis",
    "memcache": "Memcache",
    "lmdb": "LMDB",
}
#: Every interface the contract suite runs against.
INTERFACES = [kind.name for kind in REGISTRY]
#: Interfaces that list keys (keys(), scan()); the others raise SynchroUnsupported there.
LISTING = [kind.name for kind in REGISTRY if kind.lists_keys]
UNLISTING = [kind.name for kind in REGISTRY if not kind.lists_keys]
#: Interfaces with publish/subscribe; the others raise SynchroUnsupported there.
NOTIFYING = [kind.name for kind in REGISTRY if kind.notifies]
SILENT = [kind.name for kind in REGISTRY if not kind.notifies]
#: Interfaces whose backend is a server several apps can share.
SHARED = [kind.name for kind in REGISTRY if kind.shared]
#: Interfaces that talk to their backend over connections (and batch).
NETWORK = [kind.name for kind in REGISTRY if kind.network]
#: Interfaces the multi-worker suites run (real `sanic --workers N` processes).
WORKERS = [kind.name for kind in REGISTRY if kind.workers]
#: Interfaces whose workers hear each other's messages (publish/subscribe).
NOTIFYING_WORKERS = [kind.name for kind in REGISTRY if kind.workers and kind.notifies]
assert set(SERVED_BY) == set(WORKERS), "every multi-worker kind names the class serving it"


def interface_fixture(kinds: list[str]) -> Any:
    """The ``interface`` fixture over ``kinds``: a new interface of each kind, closed after
    the test. conftest.py makes it over every interface; a module whose tests apply to
    fewer (publish/subscribe) defines its own over those."""

    @pytest.fixture(params=kinds, name="interface")
    async def interface(
        request: pytest.FixtureRequest, make_interface: Callable[..., BaseSynchroInterface]
    ) -> AsyncIterator[BaseSynchroInterface]:
        made = make_interface(request.param)
        yield made
        await made.aclose()

    return interface
