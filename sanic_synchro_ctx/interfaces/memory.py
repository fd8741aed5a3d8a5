"""InMemory: a store inside this process. For tests, development and single-process apps."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from ..serializer import Serializer
from .base import DEFAULT_MAX_VALUE_SIZE
from .storebacked import StoreBackedInterface, run_when_awaited
from .syncmanager.store import Store

__all__ = ["InMemory"]


class InMemory(StoreBackedInterface):
    shares_between_processes = False

    """Keeps the context in this process: nothing is shared between worker processes.

    Use it for tests and for apps that run one process. An app started with more than one
    worker gets a RuntimeWarning from the main process, because each worker would then
    hold its own, diverging copy. Operations run inline (no I/O) from both front ends.
    """

    def __init__(
        self,
        *,
        prefix: str | None = None,
        serializer: Serializer | None = None,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
    ) -> None:
        super().__init__(prefix=prefix, serializer=serializer, max_value_size=max_value_size)
        self._store = Store()

    def _backend(self) -> Store:
        return self._store

    def _call(self, method: str, *args: Any) -> Awaitable[Any]:
        return run_when_awaited(getattr(self._store, method), args)

    def __repr__(self) -> str:
        return "InMemory()"
