"""The event bus notices a Redis that stops answering, and comes back with it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from regcopilot.cache.bus import EventBus
from tests.support import RedisServer, eventually


@pytest.fixture
def own_redis():
    server = RedisServer().start()
    yield server
    server.stop()


@contextlib.asynccontextmanager
async def heard_bus(url: str) -> AsyncIterator[tuple[EventBus, list[dict]]]:
    """A started bus with a heartbeat every 0.2 s, once it has heard itself; closed after."""
    received: list[dict] = []
    bus = EventBus(url, "test-events", ping_seconds=0.2)
    bus.subscribe(received.append)
    bus.start()
    try:
        await eventually(lambda: bus.connected, timeout=5)
        yield bus, received
    finally:
        await bus.close()


async def test_bus_drops_a_stalled_redis_and_rejoins(own_redis):
    async with heard_bus(own_redis.url) as (bus, received):
        assert await bus.publish({"type": "revoke", "jti": "a", "exp": 1})
        await eventually(lambda: received, timeout=5)
        # Several heartbeats heard back on a healthy server: the line must hold.
        await eventually(lambda: bus.beats_heard >= 4, timeout=5)
        assert bus.connected and bus.connects == 1

        own_redis.pause()  # the socket stays open: only the missing heartbeat can tell
        try:
            await eventually(lambda: not bus.connected, timeout=5)
        finally:
            own_redis.resume()
        await eventually(lambda: bus.connected, timeout=5)
        assert await bus.publish({"type": "revoke", "jti": "b", "exp": 1})
        await eventually(lambda: len(received) == 2, timeout=5)


async def test_a_deaf_subscription_is_caught_said_once_and_rebuilt(own_redis, caplog):
    """Socket up, subscription gone (what a proxy or a failover can leave behind): only the
    bus's own heartbeat, missing from what it hears, can tell."""
    caplog.set_level(logging.INFO, logger="regcopilot")
    async with heard_bus(own_redis.url) as (bus, received):
        connects = bus.connects
        await bus.pubsub.unsubscribe("test-events")
        await eventually(lambda: not bus.connected, timeout=1.0)  # within two heartbeats
        await eventually(lambda: bus.connected and bus.connects == connects + 1, timeout=5)
        text = caplog.text
        assert text.count("Event bus not proved") == 1 and "subscription is deaf" in text
        assert text.count("Event bus proves itself again") == 1
        assert bus.state.lost_count == 1
        assert await bus.publish({"type": "revoke", "jti": "c", "exp": 1})
        await eventually(lambda: any(e.get("jti") == "c" for e in received), timeout=5)
        assert all(e.get("type") != "heartbeat" for e in received)  # never handed out
