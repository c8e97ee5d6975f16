"""Variant (R): the physical reference — a raw ASGI callable with no framework, answering every
request with the bytes (0) sends for /api/health, on the same uvicorn flags and core as ours.
Nothing an app does can be cheaper on this server: the gap between (R) and a variant is that
variant's own code.

    uvicorn bench.raw_app:app --no-access-log --proxy-headers
"""

from __future__ import annotations

from typing import Any

BODY = b'{"status":"ok"}'
# The two messages are built once, as the fastest possible app would; uvicorn copies the
# header list before it adds its own.
START = {"type": "http.response.start", "status": 200,
         "headers": [(b"content-length", b"%d" % len(BODY)),
                     (b"content-type", b"application/json")]}
END = {"type": "http.response.body", "body": BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send(START)
        await send(END)
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
