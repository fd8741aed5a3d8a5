"""Notifications: what a publish costs against the raw client, and how long a message takes
to reach a subscriber in another process.

Latency is measured ping-pong: an echo process subscribes to "ping"; for each message it
takes the one-way time (both processes read the same monotonic clock) and publishes it back
on "pong", and the next ping leaves only once that came back (no queueing). Ours and the raw
redis.asyncio pub/sub take turns message by message, each with an echo process of its own.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import statistics
import time
from typing import Any

import redis.asyncio as redis_asyncio

from sanic_synchro_ctx import AIORedis, SyncManager
from sanic_synchro_ctx.context import SynchroContext
from sanic_synchro_ctx.interfaces.syncmanager.process import ManagerProcess

from .timing import Ratio, interleaved_latency

#: How to build the interface in the echo process: ("manager", address, authkey, prefix),
#: ("aioredis", url, prefix) or ("raw", url, channel prefix).
Spec = tuple[Any, ...]


def _build(spec: Spec) -> Any:
    if spec[0] == "manager":
        return SyncManager(spec[1], spec[2], prefix=spec[3])
    return AIORedis.from_url(spec[1], prefix=spec[2])


async def _echo(spec: Spec) -> None:
    if spec[0] == "raw":
        client = redis_asyncio.Redis.from_url(spec[1])
        pubsub = client.pubsub()
        await pubsub.subscribe(spec[2] + b"ping")
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None or message["type"] != "message":
                continue
            sent = json.loads(message["data"])
            if sent is None:
                return
            took = time.monotonic_ns() - sent
            await client.publish(spec[2] + b"pong", json.dumps(took))
    ctx = SynchroContext(_build(spec))
    async with ctx.subscribe("ping") as subscription:
        async for _, sent in subscription:
            if sent is None:
                return
            await ctx.publish("pong", time.monotonic_ns() - sent)


def _echo_process(spec: Spec) -> None:
    asyncio.run(_echo(spec))


class _Side:
    """The measuring end of one ping-pong pair."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.took: list[float] = []

    async def open(self) -> None:
        spec = self.spec
        self.process = multiprocessing.get_context("spawn").Process(
            target=_echo_process, args=(spec,), daemon=True
        )
        self.process.start()
        if spec[0] == "raw":
            self.client = redis_asyncio.Redis.from_url(spec[1])
            self.pubsub = self.client.pubsub()
            await self.pubsub.subscribe(spec[2] + b"pong")
            ping = spec[2] + b"ping"

            async def publish(value: Any) -> int:
                received: int = await self.client.publish(ping, json.dumps(value))
                return received

            async def receive() -> Any:
                while True:
                    message = await self.pubsub.get_message(timeout=10)
                    if message is None:
                        raise TimeoutError("no pong")
                    if message["type"] == "message":
                        return json.loads(message["data"])

        else:
            self.ctx = SynchroContext(_build(spec))
            self.subscription = self.ctx.subscribe("pong")
            await self.subscription.__aenter__()

            async def publish(value: Any) -> int:
                received: int = await self.ctx.publish("ping", value)
                return received

            async def receive() -> Any:
                item = await self.subscription.get(10)
                if item is None:
                    raise TimeoutError("no pong")
                return item[1]

        self.publish, self.receive = publish, receive
        deadline = time.monotonic() + 30
        while await publish(-1) < 1:  # the echo process subscribed (its answer is dropped)
            if time.monotonic() > deadline:
                raise TimeoutError("the echo process did not subscribe")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        while True:  # drop the pongs of those probes
            try:
                await asyncio.wait_for(receive(), 0.2)
            except (TimeoutError, asyncio.TimeoutError):
                break

    async def once(self) -> None:
        await self.publish(time.monotonic_ns())
        self.took.append((await self.receive()) / 1000)

    async def close(self) -> None:
        await self.publish(None)
        self.process.join(10)
        if self.spec[0] == "raw":
            await self.pubsub.aclose()
            await self.client.aclose()
        else:
            await self.subscription.__aexit__(None, None, None)
            await self.ctx.interface.aclose()


async def _latency(group: str, ours: Spec, raw: Spec, *, count: int) -> Ratio:
    mine, theirs = _Side(ours), _Side(raw)
    await mine.open()
    await theirs.open()
    try:
        for i in range(count):
            first, second = (mine, theirs) if i % 2 else (theirs, mine)
            await first.once()
            await second.once()
    finally:
        await mine.close()
        await theirs.close()

    def p99(values: list[float]) -> float:
        return sorted(values)[int(len(values) * 0.99)]

    return Ratio(
        "Notifications: publish → received in another process",
        f"{group} (vs redis.asyncio pub/sub)",
        statistics.median(mine.took),
        statistics.median(theirs.took),
        "µs",
        None,
        extra=f"p99 {p99(mine.took):,.0f} vs {p99(theirs.took):,.0f} µs",
    )


async def run(redis_url: str, quick: bool) -> list[Ratio]:
    calls = 900 if quick else 5_000
    messages = 300 if quick else 2_000
    tag = f"n{os.getpid()}"
    results: list[Ratio] = []

    ours = AIORedis.from_url(redis_url, prefix=f"{tag}_publish")
    ctx = SynchroContext(ours)
    client = redis_asyncio.Redis.from_url(redis_url)
    channel = ours.channel_name("bench").encode()
    mine, theirs = await interleaved_latency(
        lambda: ctx.publish("bench", 1), lambda: client.publish(channel, b"1"), count=calls
    )
    results.append(
        Ratio(
            "Notifications",
            "AIORedis publish (vs redis.asyncio PUBLISH)",
            mine,
            theirs,
            "µs/op",
            "<= 1.10x",
        )
    )
    await ours.aclose()
    await client.aclose()

    raw: Spec = ("raw", redis_url, f"{tag}_raw:".encode())
    results.append(
        await _latency("AIORedis", ("aioredis", redis_url, f"{tag}_aioredis"), raw, count=messages)
    )
    process = ManagerProcess.start(watch_pid=os.getpid())
    try:
        manager: Spec = ("manager", process.address, process.authkey, f"{tag}_manager")
        results.append(await _latency("SyncManager", manager, raw, count=messages))
    finally:
        process.stop()
    return results


def main(redis_url: str, quick: bool) -> list[Ratio]:
    return asyncio.run(run(redis_url, quick))
