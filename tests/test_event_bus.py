"""The event bus notices a Redis that stops answering, and comes back with it."""

from __future__ import annotations

import pytest

from regcopilot.cache.bus import EventBus
from tests.support import RedisServer, eventually


@pytest.fixture
def own_redis():
    server = RedisServer().start()
    yield server
    server.stop()


async def test_bus_drops_a_stalled_redis_and_rejoins(own_redis):
    received: list[dict] = []
    bus = EventBus(own_redis.url, "test-events", ping_seconds=0.2)
    bus.subscribe(received.append)
    bus.start()
    try:
        await eventually(lambda: bus.connected, timeout=5)
        assert await bus.publish({"type": "revoke", "jti": "a", "exp": 1})
        await eventually(lambda: received, timeout=5)
        # Several PINGs answered on a healthy server: the line must hold.
        await eventually(lambda: bus.pongs >= 4, timeout=5)
        assert bus.connected and bus.connects == 1

        own_redis.pause()  # the socket stays open: only the missing PONG can tell
        await eventually(lambda: not bus.connected, timeout=5)
        own_redis.resume()
        await eventually(lambda: bus.connected, timeout=5)
        assert await bus.publish({"type": "revoke", "jti": "b", "exp": 1})
        await eventually(lambda: len(received) == 2, timeout=5)
    finally:
        own_redis.resume()
        await bus.close()
