"""Events every process must hear (session revocations), over Redis pub/sub.

A separate connection from the request-path client: pub/sub reads block by design, and the
request path's 50 ms socket timeout would cut them. A periodic PING detects a dead server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any

from regcopilot.background import cancelling, stop
from regcopilot.cache.redis import connect, translated
from regcopilot.cache.store import StoreError

log = logging.getLogger("regcopilot.cache")

Handler = Callable[[dict[str, Any]], None]
RECONNECT_SECONDS = 0.5
PING_SECONDS = 5.0


class EventBus:
    def __init__(self, url: str, channel: str, *, ping_seconds: float = PING_SECONDS) -> None:
        self.url = url
        self.ping_seconds = ping_seconds
        self.channel = channel
        self.connected = False
        self.connects = 0  # subscriptions made; more than one means the line dropped
        self.pongs = 0  # PINGs answered: the line is alive
        self._handlers: list[Handler] = []
        self._on_connect: list[Callable[[], Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._publisher = connect(url, 1.0)

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
                    self.connected = True
                    self.connects += 1
                    for hook in self._on_connect:
                        result = hook()
                        if asyncio.iscoroutine(result):
                            await result
                    await self._listen(pubsub)
            except StoreError as exc:
                if cancelling():
                    raise asyncio.CancelledError from exc  # redis-py disguised our cancel
                if self.connected:
                    log.warning("Event bus lost: %s", exc)
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _listen(self, pubsub: Any) -> None:
        """Deliver messages, and PING the server every ping_seconds on the publishing
        connection: a stalled Redis keeps the subscription's socket open and silent, so only
        an unanswered command shows it. (Not a PING on the subscription itself: how its PONG
        comes back differs between protocol versions.)"""
        loop = asyncio.get_running_loop()
        last_ping = loop.time()
        while True:
            message = await pubsub.get_message(timeout=self.ping_seconds)
            if message is not None and message.get("type") == "message":
                self._dispatch(message.get("data"))
            if loop.time() - last_ping >= self.ping_seconds:
                await self._publisher.ping()
                self.pongs += 1
                last_ping = loop.time()

    def _dispatch(self, data: Any) -> None:
        try:
            event = json.loads(data)
        except (TypeError, ValueError):
            return
        if not isinstance(event, dict):
            return
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:
                log.exception("Event handler failed")
