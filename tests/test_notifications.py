"""Publish/subscribe, the contract part: every test runs on every interface x front end.

Interfaces that cannot notify (memcached, LMDB, the docs' example) must refuse with
SynchroUnsupported; the others must deliver. Workers, restarts and slow subscribers are in
test_notification_workers.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from sanic_synchro_ctx import (
    SynchroError,
    SynchroSerializationError,
    SynchroTypeError,
    SynchroUnsupported,
    SynchroValueError,
)

from .registry import NOTIFYING, SHARED, SILENT, interface_fixture

pytestmark = pytest.mark.timeout(60)


#: Here the interfaces that notify (those that cannot are tested for refusing).
interface = interface_fixture(NOTIFYING)


@pytest.fixture
def pubsub(ctx: Any) -> Any:
    """The context, on an interface that notifies."""
    return ctx


async def receive(subscription: Any, count: int, timeout: float = 10.0) -> list[Any]:
    """The next ``count`` messages (fails if they do not all come within ``timeout``)."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        item = await subscription.get(max(0.0, deadline - time.monotonic()))
        if item is None:
            pytest.fail(f"{len(got)} of {count} messages came within {timeout} s: {got[-3:]}")
        got.append(item)
    return got


@pytest.mark.parametrize("interface", SILENT, indirect=True)
async def test_unsupported_interfaces_refuse_publish_and_subscribe(ctx: Any) -> None:
    with pytest.raises(SynchroUnsupported):
        await ctx.publish("news", 1)
    with pytest.raises(SynchroUnsupported):
        ctx.subscribe("news")


async def test_every_subscriber_gets_every_message_in_publish_order(pubsub: Any) -> None:
    async with pubsub.subscribe("news") as first, pubsub.subscribe("news") as second:
        counts = [await pubsub.publish("news", {"n": n}) for n in range(100)]
        expected = [("news", {"n": n}) for n in range(100)]
        assert await receive(first, 100) == expected
        assert await receive(second, 100) == expected
    assert counts == [2] * 100
    assert first.dropped == second.dropped == 0


async def test_publish_without_subscribers_reaches_nobody(pubsub: Any) -> None:
    assert await pubsub.publish("nobody-listens", "hello") == 0
    async with pubsub.subscribe("elsewhere") as subscription:
        assert await pubsub.publish("nobody-listens", "hello") == 0
        assert await subscription.get(0.2) is None


async def test_subscription_is_live_as_soon_as_the_block_is_entered(pubsub: Any) -> None:
    for attempt in range(5):  # a new subscription each time: none may miss the first message
        # (a channel each: the manager, like Redis, may count a subscription that has just
        # been closed among the receivers for a moment after its block ended)
        channel = f"live{attempt}"
        async with pubsub.subscribe(channel) as subscription:
            assert await pubsub.publish(channel, attempt) == 1
            assert await receive(subscription, 1) == [(channel, attempt)]


async def test_one_subscription_hears_several_channels_named_as_given(pubsub: Any) -> None:
    channels = ["flags", "ünïcödé ✓ 日本", "with space", "a:b*[c]?", "x" * 1000]
    async with pubsub.subscribe(*channels) as subscription:
        for index, channel in enumerate(channels):
            assert await pubsub.publish(channel, index) == 1
        await pubsub.publish("not-subscribed", "ignored")
        assert await receive(subscription, len(channels)) == [
            (channel, index) for index, channel in enumerate(channels)
        ]
        assert await subscription.get(0.2) is None


@pytest.mark.parametrize(
    "message",
    [None, True, 0, -(2**63), 1.5, "", "ünïcödé", [], {}, [1, [2, {"x": None}]], {"a": {"b": 1}}],
    ids=repr,
)
async def test_messages_arrive_as_json_values(pubsub: Any, message: Any) -> None:
    async with pubsub.subscribe("values") as subscription:
        await pubsub.publish("values", message)
        ((channel, got),) = await receive(subscription, 1)
    assert channel == "values"
    assert got == message
    assert type(got) is type(message)


async def test_a_full_buffer_drops_the_oldest_and_counts_them(pubsub: Any) -> None:
    async with pubsub.subscribe("burst", max_pending=5) as subscription:
        for n in range(20):
            await pubsub.publish("burst", n)
        deadline = time.monotonic() + 10
        while subscription.dropped < 15:  # the last messages may still be on their way
            assert time.monotonic() < deadline, f"dropped {subscription.dropped} of 15"
            await asyncio.sleep(0.01)
        assert await receive(subscription, 5) == [("burst", n) for n in range(15, 20)]
        assert subscription.dropped == 15
        assert await subscription.get(0.1) is None


async def test_get_waits_no_longer_than_its_timeout(pubsub: Any) -> None:
    async with pubsub.subscribe("quiet") as subscription:
        started = time.monotonic()
        assert await subscription.get(0.2) is None
        assert 0.19 <= time.monotonic() - started < 2.0
        assert await subscription.get(0) is None


async def test_leaving_the_block_unsubscribes(pubsub: Any) -> None:
    async with pubsub.subscribe("brief"):
        assert await pubsub.publish("brief", 1) == 1
    deadline = time.monotonic() + 10
    while await pubsub.publish("brief", 2) != 0:  # Redis may take a moment to notice
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("channel", ["", 7, None, b"bytes"], ids=repr)
async def test_bad_channels_are_refused_with_typed_errors(pubsub: Any, channel: Any) -> None:
    error = SynchroValueError if channel == "" else SynchroTypeError
    with pytest.raises(error):
        await pubsub.publish(channel, 1)
    with pytest.raises(error):
        pubsub.subscribe(channel)
    with pytest.raises(error):
        pubsub.subscribe("good", channel)


async def test_subscribe_needs_a_channel_and_a_positive_max_pending(pubsub: Any) -> None:
    with pytest.raises(SynchroValueError):
        pubsub.subscribe()
    for bad in (0, -1, True, 1.5, "10"):
        with pytest.raises(SynchroValueError):
            pubsub.subscribe("news", max_pending=bad)


async def test_an_unserializable_message_is_refused_and_nothing_is_sent(pubsub: Any) -> None:
    async with pubsub.subscribe("bad") as subscription:
        for message in (object(), {1, 2}, b"bytes", {"deep": [object()]}):
            with pytest.raises(SynchroSerializationError):
                await pubsub.publish("bad", message)
        with pytest.raises(SynchroValueError):  # over the value size limit
            await pubsub.publish("bad", "x" * 2_000_000)
        assert await pubsub.publish("bad", "fine") == 1
        assert await receive(subscription, 1) == [("bad", "fine")]
        assert await subscription.get(0.2) is None


async def test_get_outside_the_block_is_refused(pubsub: Any) -> None:
    subscription = pubsub.subscribe("outside")
    with pytest.raises(SynchroError):
        await subscription.get(0)
    async with subscription:
        pass
    with pytest.raises(SynchroError):
        await subscription.get(0)


async def test_publish_is_counted_in_stats(pubsub: Any) -> None:
    pubsub.interface.stats(reset=True)
    await pubsub.publish("counted", 1)
    assert pubsub.interface.stats()["operations"]["publish"]["calls"] == 1


@pytest.mark.parametrize(
    "shared_backend", [kind for kind in SHARED if kind in NOTIFYING], indirect=True
)
async def test_channels_are_namespaced_like_keys(shared_backend: Callable[..., Any]) -> None:
    mine, theirs = shared_backend("a"), shared_backend("b")
    async with mine.subscribe("news") as subscription:
        assert await theirs.publish("news", "for b only") == 0
        assert await mine.publish("news", "for a") == 1
        assert await receive(subscription, 1) == [("news", "for a")]
        assert await subscription.get(0.2) is None
