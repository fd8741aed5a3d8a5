"""AIORedis on Redis Sentinel: failover under load, and WAIT for acknowledged writes.

Each test has a group of its own (a master, one replica, three Sentinels): a failover
changes who is master. The contract suite runs on Sentinel too (``aioredis-sentinel``)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sanic_synchro_ctx import AIORedis, SynchroConnectionError, SynchroValueError

from .backends import RedisSentinels
from .servers import SanicServer, wait_for

pytestmark = pytest.mark.timeout(180)

#: Seconds after the Sentinels name the new master within which operations may still fail:
#: until the old master rejoins as a replica (the Sentinels' INFO period is 10 s).
REJOIN = 15.0


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[RedisSentinels]:
    group = RedisSentinels(tmp_path).start()
    yield group
    group.stop()


def fail_over(group: RedisSentinels) -> int:
    """Make the Sentinels promote the replica; the new master's port once they name it.

    A Sentinel refuses with ``-NOGOODSLAVE`` until it has read the replica's own INFO
    (it learns of the replica from the master's INFO first): a refused request did
    nothing, so it is asked again until accepted."""
    old = group.master_port()

    def request() -> bool:
        with socket.create_connection(("127.0.0.1", group.sentinel_ports[0]), timeout=5) as sock:
            sock.sendall(b"SENTINEL FAILOVER main\r\n")
            reply = sock.recv(4096)
        assert reply.startswith((b"+OK", b"-NOGOODSLAVE")), reply
        return reply.startswith(b"+OK")

    wait_for(request, timeout=30, what="the Sentinel accepting the failover")
    new: int = wait_for(
        lambda: (port := group.master_port()) != old and port, timeout=30, what="a new master"
    )
    return new


class IncrementLoad:
    """Increments ``n`` one after the other until stopped: the values acknowledged, and
    when and why each failed increment failed."""

    def __init__(self, interface: AIORedis) -> None:
        self.interface = interface
        self.acknowledged: list[int] = []
        self.failures: list[float] = []
        self.reasons: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def running(self, count: int = 50, timeout: float = 30.0) -> None:
        """Return once ``count`` increments were acknowledged."""
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < count:
            assert time.monotonic() < deadline, f"{len(self.acknowledged)} increments"
            await asyncio.sleep(0.01)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.acknowledged.append(await self.interface.increment("n"))
            except SynchroConnectionError as exc:
                self.failures.append(time.monotonic())
                self.reasons.append(str(exc)[:100])
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


def test_bad_sentinel_settings_are_refused() -> None:
    with pytest.raises(SynchroValueError, match="sentinels"):
        AIORedis.from_sentinel([], "main")
    with pytest.raises(SynchroValueError, match="service_name"):
        AIORedis.from_sentinel([("127.0.0.1", 1)], "")
    with pytest.raises(SynchroValueError, match="wait_replicas"):
        AIORedis.from_sentinel([("127.0.0.1", 1)], "main", wait_replicas=-1)
    with pytest.raises(SynchroValueError, match="wait_timeout"):
        AIORedis.from_sentinel([("127.0.0.1", 1)], "main", wait_replicas=1, wait_timeout=60)


async def test_a_client_of_master_for_is_taken_as_it_is(sentinels: RedisSentinels) -> None:
    from redis.asyncio.sentinel import Sentinel

    client = Sentinel(sentinels.addresses, socket_timeout=5).master_for("main")
    interface = AIORedis(client, prefix="given")
    try:
        assert interface.endpoint == sentinels.url
        await interface.set("k", 1)
        assert await interface.increment("k") == 2
        # the blocking front end builds its own Sentinel-managed client (another loop)
        assert await asyncio.to_thread(lambda: interface.run_blocking(interface.get("k"))) == 2
    finally:
        await interface.aclose()
        await client.aclose()


async def test_without_enough_replicas_a_write_is_not_acknowledged(
    sentinels: RedisSentinels,
) -> None:
    interface = AIORedis.from_sentinel(
        sentinels.addresses, "main", prefix="wait", wait_replicas=2, wait_timeout=0.2
    )
    try:  # one replica only: WAIT 2 never has its two acknowledgements
        with pytest.raises(SynchroConnectionError, match="of the 2 replicas"):
            await interface.set("n", 5)
    finally:
        await interface.aclose()
    enough = AIORedis.from_sentinel(sentinels.addresses, "main", prefix="wait", wait_replicas=1)
    try:
        assert await enough.get("n") == 5  # the unacknowledged write was applied on the master
        assert await enough.increment("n") == 6  # one replica acknowledges: enough for 1
    finally:
        await enough.aclose()


async def test_after_a_failover_operations_reach_the_new_master(
    sentinels: RedisSentinels,
) -> None:
    interface = AIORedis.from_sentinel(
        sentinels.addresses, "main", prefix="failover", wait_replicas=1
    )
    load = IncrementLoad(interface)
    acknowledged, failures, reasons = load.acknowledged, load.failures, load.reasons
    try:
        load.start()
        await load.running()  # before the failover
        started = time.monotonic()
        new_master = await asyncio.to_thread(fail_over, sentinels)
        named = time.monotonic()
        before = len(acknowledged)
        while len(acknowledged) < before + 200:  # it serves again, from the new master
            assert time.monotonic() - named < 30, "no increment since the failover"
            await asyncio.sleep(0.05)
        await load.stop()
        window = (max(failures) - started) if failures else 0.0
        print(f"failover: {len(failures)} failed operations within {window:.2f} s")
        # With one replica, writes cannot be acknowledged from the promotion until the old
        # master rejoins as a replica (the Sentinels reconfigure it on their next 10 s INFO)
        assert all(started <= moment <= named + REJOIN for moment in failures), reasons
        assert all("replicas" in reason or "unreachable" in reason for reason in reasons)
        # no acknowledged increment was lost: none handed out twice, all in the count
        assert len(set(acknowledged)) == len(acknowledged)
        final = await interface.get("n")
        assert final >= max(acknowledged)
        assert sentinels.master_port() == new_master
    finally:
        await load.stop()
        await interface.aclose()


async def test_without_wait_replicas_writes_follow_the_master_the_sentinels_name(
    sentinels: RedisSentinels,
) -> None:
    """Plain mode (no WAIT): after a failover the old master goes on accepting writes until
    the Sentinels demote it (what a failover can lose, as documented); from then on every
    write lands on the new master, with errors at most until then."""
    import redis

    interface = AIORedis.from_sentinel(sentinels.addresses, "main", prefix="plain")
    load = IncrementLoad(interface)
    try:
        load.start()
        await load.running()  # before the failover
        started = time.monotonic()
        new_master = await asyncio.to_thread(fail_over, sentinels)
        named = time.monotonic()
        direct = redis.Redis(port=new_master)
        try:
            # the new master's counter grows: the writes reach it by themselves
            first = int(direct.get("plain:n") or 0)
            deadline = time.monotonic() + 30
            while int(direct.get("plain:n") or 0) < first + 100:
                assert time.monotonic() < deadline, "no write reached the new master"
                await asyncio.sleep(0.05)
        finally:
            direct.close()
        await load.stop()
        assert all(started <= moment <= named + REJOIN for moment in load.failures)
    finally:
        await load.stop()
        await interface.aclose()


def test_failover_under_http_load_of_two_workers(
    tmp_path: Path, sentinels: RedisSentinels, app_name: str
) -> None:
    env = {
        "SYNCHRO_INTERFACE": "aioredis-sentinel",
        "SYNCHRO_SENTINELS": ",".join(f"127.0.0.1:{port}" for port in sentinels.sentinel_ports),
        "SYNCHRO_WAIT_REPLICAS": "1",
        "SYNCHRO_PREFIX": app_name,
    }
    with SanicServer.cli(tmp_path, "--workers", "2", env=env) as server:
        server.wait_workers(2)
        server.assert_served_by("AIORedis", 2)
        workers_before = set(server.statuses_by_worker("/pid", 2))
        acknowledged: list[int] = []
        failed: list[tuple[float, int]] = []
        done = threading.Event()

        def load() -> None:
            while not done.is_set():
                reply = server.request("/inc", timeout=15)
                if reply.status_code == 200:
                    acknowledged.append(int(reply.text.split()[0]))
                else:
                    failed.append((time.monotonic(), reply.status_code))

        with ThreadPoolExecutor(4) as pool:
            loads = [pool.submit(load) for _ in range(4)]
            wait_for(lambda: len(acknowledged) > 200, timeout=30, what="load")
            started = time.monotonic()
            fail_over(sentinels)
            named = time.monotonic()
            count = len(acknowledged)
            wait_for(lambda: len(acknowledged) > count + 400, timeout=30, what="serving again")
            done.set()
            for one in loads:
                one.result()
        window = (max(t for t, _ in failed) - started) if failed else 0.0
        print(f"failover under HTTP load: {len(failed)} failed requests within {window:.2f} s")
        assert all(started <= moment <= named + REJOIN for moment, _ in failed), failed[:5]
        assert {status for _, status in failed} <= {500, 503}  # SynchroConnectionError
        assert len(set(acknowledged)) == len(acknowledged)  # none lost, none handed out twice
        final = int(server.get("/count").text)
        assert final >= max(acknowledged)
        # no worker died: the same two serve, from the new master
        assert set(server.statuses_by_worker("/pid", 2)) == workers_before
