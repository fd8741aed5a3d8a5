"""0.1.0 code keeps working: SanicSynchroCtx, and the 0.1.0 README's two examples run with
only the changes current Sanic requires, counting exactly with ``--workers 8``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sanic import Sanic

from sanic_synchro_ctx import SanicSynchroCtx, SynchroValueError
from sanic_synchro_ctx.context import BlockingSynchroContext, SynchroContext

from .backends import RedisServer
from .servers import REPO, SanicServer

pytestmark = pytest.mark.timeout(300)

EXAMPLES = REPO / "tests" / "apps" / "v010"


def test_it_warns_and_names_the_replacement(app: Sanic[Any, Any]) -> None:
    with pytest.warns(DeprecationWarning, match=r"use Synchro\(app\)"):
        SanicSynchroCtx(app)
    assert isinstance(app.ctx.synchro, BlockingSynchroContext)  # 0.1.0's manager: blocking


def test_the_redis_backend_is_awaited_as_in_0_1_0(
    app: Sanic[Any, Any], redis_server: RedisServer
) -> None:
    import redis.asyncio

    with pytest.warns(DeprecationWarning, match="SanicSynchroCtx is deprecated"):
        SanicSynchroCtx(app, backend="redis", redis_client=redis.asyncio.from_url(redis_server.url))
    assert isinstance(app.ctx.synchro, SynchroContext)


@pytest.mark.parametrize(
    ("options", "match"),
    [({"backend": "memcached"}, "unknown backend"), ({"backend": "redis"}, "redis_client")],
)
def test_bad_options_are_refused(app: Sanic[Any, Any], options: dict[str, Any], match: str) -> None:
    with (
        pytest.warns(DeprecationWarning, match="deprecated"),
        pytest.raises(SynchroValueError, match=match),
    ):
        SanicSynchroCtx(app, **options)


@pytest.mark.parametrize("example", ["manager_app", "redis_app"])
def test_the_0_1_0_readme_examples_count_exactly_with_eight_workers(
    example: str, tmp_path: Path, redis_server: RedisServer
) -> None:
    code = (EXAMPLES / f"{example}.py").read_text()
    (tmp_path / "v010.py").write_text(code.replace("redis://localhost", redis_server.url))
    server = SanicServer.wrapping("v010:app", tmp_path, "--workers", "8", cwd=tmp_path)
    server.start(timeout=120, ready="/not-a-route")  # 404 once serving; no key read yet
    try:
        server.wait_main_monitoring()
        bodies = server.hammer("/inc", 400, concurrency=40)
        assert bodies == ["<p>Incremented!</p>"] * 400
        counts = server.bodies_on_fresh_connections("/count", 32)
        assert set(counts) == {"<p>count: 400</p>"}, counts
        assert server.library_tracebacks() == []
    finally:
        server.stop()
