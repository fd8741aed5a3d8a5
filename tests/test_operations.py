"""The table of operations (sanic_synchro_ctx/operations.py) against every place that repeats
an operation: the base's method (the signature), both front ends and both pipelines."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from sanic_synchro_ctx import BlockingSynchroContext, SynchroContext
from sanic_synchro_ctx.interfaces.base import BaseSynchroInterface
from sanic_synchro_ctx.operations import PIPELINED, TABLE
from sanic_synchro_ctx.pipeline import BlockingPipeline, Pipeline

#: What the front ends hold besides operations: coordination objects, subscriptions,
#: pipelines, and the ways to the interface and the other front end.
NOT_OPERATIONS = {"lock", "semaphore", "subscribe", "pipeline", "interface", "sync", "aio"}


def public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def parameters(method: Callable[..., Any]) -> list[tuple[str, Any, Any]]:
    """(name, kind, default) of each parameter but ``self``: what a caller can pass."""
    found = inspect.signature(method).parameters.values()
    return [(p.name, p.kind, p.default) for p in found if p.name != "self"]


def test_every_operation_of_the_front_ends_is_in_the_table() -> None:
    names = {operation.name for operation in TABLE}
    assert public(SynchroContext) - NOT_OPERATIONS == names
    assert public(BlockingSynchroContext) - NOT_OPERATIONS == names


def test_the_pipelines_queue_exactly_the_pipelined_operations() -> None:
    assert public(Pipeline) == PIPELINED
    assert public(BlockingPipeline) == PIPELINED


@pytest.mark.parametrize("operation", TABLE, ids=lambda operation: operation.name)
def test_every_place_takes_the_operations_own_arguments(operation: Any) -> None:
    """Each front end's and pipeline's method takes the arguments of the base's method:
    the same names, kinds and defaults (scan, which the base runs in pages, is the async
    front end's)."""
    name = operation.name
    reference = getattr(BaseSynchroInterface, name, None) or getattr(SynchroContext, name)
    places = [SynchroContext, BlockingSynchroContext]
    if operation.pipelines:
        places += [Pipeline, BlockingPipeline]
    expected = parameters(reference)
    for place in places:
        assert parameters(getattr(place, name)) == expected, f"{place.__name__}.{name}"


def test_a_place_that_drifted_is_told_apart() -> None:
    """The comparison sees a changed default, a renamed or a keyword-only argument."""

    def other_default(self: Any, key: str, by: int = 2, *, ttl: float | None = None) -> None: ...

    def renamed(self: Any, name: str, by: int = 1, *, ttl: float | None = None) -> None: ...

    def not_keyword_only(self: Any, key: str, by: int = 1, ttl: float | None = None) -> None: ...

    expected = parameters(BaseSynchroInterface.increment)
    for drifted in (other_default, renamed, not_keyword_only):
        assert parameters(drifted) != expected, drifted.__name__
