"""Events every process must hear (session revocations), over Redis pub/sub.

A separate connection from the request-path client: pub/sub reads block by design, and the
request path's 50 ms socket timeout would cut them.

A subscription can go deaf with its socket up: a proxy in between that drops the subscription
on a backend switch, a failover that moves the publishers to a new server while this socket
stays on the old one, a stalled server. So the bus proves it hears the way the change feed does
(feed.py): every ping_seconds it publishes a heartbeat of its own on the channel and must hear
it back within ping_seconds; until it does, `state` is not complete (one WARNING, one INFO when
back) and the line is rebuilt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from regcopilot.background import cancelling, stop
from regcopilot.cache.redis import connect, translated
from regcopilot.cache.store import StoreError
from regcopilot.feed import FeedState

log = logging.getLogger("regcopilot.cache")

Handler = Callable[[dict[str, Any]], None]
RECONNECT_SECONDS = 0.5
# Heartbeat period, and how long one may take to come back (Redis delivers in well under a
# millisecond on a LAN). One PUBLISH replaces the former PING at the same period, so the idle
# Redis traffic of docs/cost-model.md is unchanged; the bus is only the fast path (the change
# feed carries every revocation within 2 s), so a deaf bus found within 10 s is soon enough.
PING_SECONDS = 5.0
HEARTBEAT = "heartbeat"


class EventBus:
    def __init__(self, url: str, channel: str, *, ping_seconds: float = PING_SECONDS) -> None:
        self.url = url
        self.ping_seconds = ping_seconds
        self.channel = channel
        self.state = FeedState("Event bus", log)
        self.connects = 0  # subscriptions made; more than one means the line dropped
        self.beats_heard = 0  # own heartbeats heard back: the line is alive and hears
        self.pubsub: Any = None  # the live subscription (tests make it deaf on purpose)
        self._me = uuid.uuid4().hex
        self._handlers: list[Handler] = []
        self._on_connect: list[Callable[[], Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._publisher = connect(url, 1.0)

    @property
    def connected(self) -> bool:
        """Heard its own heartbeat lately: every event published reaches this process."""
        return self.state.complete

    def subscribe(self, handler: Handler, on_connect: Callable[[], Any] | None = None) -> None:
        self._handlers.append(handler)
        if on_connect is not None:
            self._on_connect.append(on_connect)

    async def publish(self, event: dict[str, Any]) -> bool:
        try:
            with translated():
                await self._publisher.publish(self.channel, json.dumps(event))
        except StoreError as exc:
            log.warning("Could not publish %s: %s", event.get("type"), exc)
            return False
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-bus")

    async def close(self) -> None:
        await stop(self._task)
        await self._publisher.aclose()

    async def _run(self) -> None:
        while True:
            client = connect(self.url, 1.0)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                with translated():
                    await pubsub.subscribe(self.channel)
                    self.pubsub = pubsub
                    self.connects += 1
                    for hook in self._on_connect:
                        result = hook()
                        if asyncio.iscoroutine(result):
                            await result
                    await self._listen(pubsub)
            except StoreError as exc:
                if cancelling():
                    raise asyncio.CancelledError from exc  # redis-py disguised our cancel
                self.state.lost(str(exc))
            finally:
                self.pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen(self, pubsub: Any) -> None:
        """Deliver messages, and every ping_seconds publish a heartbeat (on the publishing
        connection) that must come back through the subscription within ping_seconds: a
        stalled Redis fails the publish, a deaf subscription never hears it."""
        loop = asyncio.get_running_loop()
        beat, sent_at, next_beat = 0, 0.0, loop.time()
        waiting = False
        while True:
            deadline = sent_at + self.ping_seconds if waiting else next_beat
            message = await pubsub.get_message(timeout=max(0.0, deadline - loop.time()))
            event = _decode(message.get("data")) \
                if message is not None and message.get("type") == "message" else None
            if event is not None and event.get("type") == HEARTBEAT:
                if waiting and event.get("from") == self._me and event.get("n") == beat:
                    waiting = False  # our own heartbeat, back through the subscription
                    self.beats_heard += 1
                    self.state.proved()
            elif event is not None:
                self._dispatch(event)
            now = loop.time()
            if waiting and now - sent_at >= self.ping_seconds:
                raise StoreError(f"own heartbeat not heard back through pub/sub within "
                                 f"{self.ping_seconds:g} s (the subscription is deaf)")
            if not waiting and now >= next_beat:
                beat += 1
                waiting, sent_at, next_beat = True, now, now + self.ping_seconds
                await self._publisher.publish(
                    self.channel, json.dumps({"type": HEARTBEAT, "from": self._me, "n": beat}))

    def _dispatch(self, event: dict[str, Any]) -> None:
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:
                log.exception("Event handler failed")


def _decode(data: Any) -> dict[str, Any] | None:
    try:
        event = json.loads(data)
    except (TypeError, ValueError):
        return None
    return event if isinstance(event, dict) else None
