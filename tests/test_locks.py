"""Blocking locks called on an event loop's thread (a plain ``def`` Sanic handler)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from sanic_synchro_ctx import LockTimeout, Synchro, SynchroError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def aio(app: Any, interface: Any) -> Any:
    Synchro(app, interface=interface)
    return app.ctx.synchro


async def test_blocking_wait_on_a_task_of_the_same_loop_fails_at_once(aio: Any) -> None:
    async with aio.lock("job", ttl=30):
        started = time.monotonic()
        with pytest.raises(LockTimeout, match="event loop"):
            aio.sync.lock("job").acquire()  # no timeout: it would otherwise wait 30 s
        assert time.monotonic() - started < 5


async def test_blocking_wait_on_a_blocking_holder_of_the_same_loop_fails_at_once(aio: Any) -> None:
    with aio.sync.lock("job", ttl=30):
        started = time.monotonic()
        with pytest.raises(LockTimeout):
            aio.sync.lock("job").acquire()
        assert time.monotonic() - started < 5


async def test_blocking_wait_on_a_holder_in_another_thread_waits(aio: Any) -> None:
    taken = threading.Event()

    def hold_briefly() -> None:
        aio.sync.lock("job", ttl=1.0).acquire()  # never released: the lease lapses
        taken.set()

    holder = threading.Thread(target=hold_briefly)
    holder.start()
    holder.join()
    assert taken.is_set()
    started = time.monotonic()
    with aio.sync.lock("job", ttl=5, timeout=10):
        waited = time.monotonic() - started
    assert waited > 0.1  # it waited for the lease (1 s) instead of failing at once


def test_blocking_lock_outside_any_loop_waits_for_its_timeout(aio: Any) -> None:
    with aio.sync.lock("job", ttl=30):
        started = time.monotonic()
        with pytest.raises(LockTimeout, match="within"):
            aio.sync.lock("job", timeout=0.2).acquire()
        assert time.monotonic() - started >= 0.2


async def test_a_lock_object_is_not_reentrant(aio: Any) -> None:
    lock = aio.lock("job")
    async with lock:
        with pytest.raises(SynchroError, match="re-entrant"):
            await lock.acquire()
