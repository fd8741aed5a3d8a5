"""Leader tasks: one job that runs in exactly one process at a time, on a renewed lease.

Every process that serves the app runs one :class:`Leadership` per job. Each polls lock
``leader:<name>`` (a plain shared lock: ``locked("leader:<name>")`` tells whether some
process leads); the one that takes it runs the job and renews the lease every ``ttl / 3``.
If the lease cannot be renewed in time (the backend unreachable for most of a lease, or the
lock taken over), the job is cancelled before the lease ends, so that a successor never runs
beside it (up to the job's next ``await``: hand ``token`` to a storage that checks fencing
tokens where even that matters). When the leading process dies, its lease ends and another
process takes over within ``ttl`` plus one poll (at most one second).

A job that returns keeps the lease until its process stops (it ran, once, for the whole
app); a job that raises is logged, its lease released, and it is tried again (by whichever
process takes the lease first) after ``ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .cancellation import wait_cancelled
from .checks import check_key, check_lease
from .deadlines import bounded
from .errors import LockNotOwned, LockTimeout, SynchroError
from .locks import AsyncLock

if TYPE_CHECKING:
    from .interfaces.base import BaseSynchroInterface

__all__ = ["LEADER_LOCK_PREFIX", "Leadership"]

_log = logging.getLogger("sanic_synchro_ctx")

#: The lock of leader task ``name`` is ``LEADER_LOCK_PREFIX + name``.
LEADER_LOCK_PREFIX = "leader:"
#: Longest pause between two attempts of a follower to take the lead.
MAX_POLL = 1.0


class Leadership:
    """Runs ``job(*args)`` whenever this process holds lock ``leader:<name>``."""

    def __init__(
        self,
        interface: BaseSynchroInterface,
        name: str,
        job: Callable[..., Awaitable[Any]],
        *,
        ttl: float = 10.0,
    ) -> None:
        self.name = check_key(name, "leader task name")
        self.ttl = check_lease(ttl)
        self._interface = interface
        self._job = job
        #: Fencing token of the current (or last) lead; 0 before the first.
        self.token = 0
        #: Whether this process leads right now.
        self.leading = False

    @property
    def lock_name(self) -> str:
        return LEADER_LOCK_PREFIX + self.name

    def _poll_delay(self) -> float:
        return min(self.ttl / 3, MAX_POLL) * random.uniform(0.5, 1.0)

    async def run(self, *args: Any) -> None:
        """Contend for the lead for ever (until cancelled), running the job while leading."""
        while True:
            lock = AsyncLock(self._interface, self.lock_name, ttl=self.ttl, timeout=0)
            try:
                await lock.acquire()
            except LockTimeout:
                await asyncio.sleep(self._poll_delay())
                continue
            except SynchroError as exc:
                _log.warning("leader task %r: cannot reach the backend (%s)", self.name, exc)
                await asyncio.sleep(self._poll_delay())
                continue
            lease_end = time.monotonic() + self.ttl  # measured after: the backend's is later
            self.token, self.leading = lock.token, True
            _log.info("leader task %r: leading (token %d)", self.name, lock.token)
            try:
                failed = await self._lead(lock, lease_end, args)
            finally:
                self.leading = False
                with contextlib.suppress(SynchroError, asyncio.TimeoutError):
                    await bounded(lock.release(), self.ttl)
            if failed:
                await asyncio.sleep(self.ttl)

    async def _lead(self, lock: AsyncLock, lease_end: float, args: tuple[Any, ...]) -> bool:
        """Run the job while the lease is ours: True if it raised (then try again later)."""
        job = asyncio.ensure_future(self._job(*args))
        renew_every = self.ttl / 3
        margin = self.ttl / 10  # cancel this long before the lease could end
        try:
            while True:
                wait = max(0.0, min(renew_every, lease_end - margin - time.monotonic()))
                done, _ = await asyncio.wait({job}, timeout=wait)
                if done:
                    if job.cancelled():
                        return True
                    error = job.exception()
                    if error is None:
                        await self._keep(lock)
                        return False
                    _log.error(
                        "leader task %r failed; it runs again in %s s",
                        self.name,
                        self.ttl,
                        exc_info=error,
                    )
                    return True
                sent = time.monotonic()
                try:
                    await bounded(lock.extend(), max(0.001, lease_end - margin - sent))
                except LockNotOwned:
                    _log.warning("leader task %r: lease taken over; cancelling", self.name)
                    return True
                except (SynchroError, asyncio.TimeoutError) as exc:
                    if time.monotonic() >= lease_end - margin:
                        _log.warning(
                            "leader task %r: lease not renewed in time (%s); cancelling",
                            self.name,
                            exc or "no answer",
                        )
                        return True
                    continue
                lease_end = sent + self.ttl
        finally:
            if not job.done():
                job.cancel()
                # Bounded by the lease: a job whose cancellation was lost (see
                # ``cancellation``; or a job that catches it) would hold this task, and
                # the server's stop, for ever; past the lease another process may lead.
                # This task's own cancellation meanwhile is raised once the job ended.
                cancelled = await wait_cancelled(job, self.ttl)
                if cancelled is not None:
                    raise cancelled

    async def _keep(self, lock: AsyncLock) -> None:
        """After the job returned: keep the lease (no other process runs it again) until
        this process stops or the lease is lost."""
        lease_end = time.monotonic() + self.ttl
        while True:
            await asyncio.sleep(self.ttl / 3)
            sent = time.monotonic()
            try:
                await lock.extend()
            except LockNotOwned:
                return
            except SynchroError:
                if time.monotonic() >= lease_end:
                    return
                continue
            lease_end = sent + self.ttl
