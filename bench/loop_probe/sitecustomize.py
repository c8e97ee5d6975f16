"""Benchmark-only: put on a server's PYTHONPATH (with LOOP_PROBE_FILE set) by
bench/login_storm.py, it records the server's event-loop lag — how late a 5 ms sleep wakes —
as `<unix time> <lag ms>` lines. That is the server's own view of "was the loop busy",
untouched by how promptly the client process itself gets the CPU."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

PERIOD_S = 0.005

if os.environ.get("LOOP_PROBE_FILE"):
    import regcopilot.web.app as _app_module

    _create_app = _app_module.create_app

    def _probed_create_app(*args: Any, **kwargs: Any) -> Any:
        app = _create_app(*args, **kwargs)
        inner = app.router.lifespan_context

        async def beat(out: Any) -> None:
            while True:
                t0 = time.monotonic()
                await asyncio.sleep(PERIOD_S)
                lag_ms = (time.monotonic() - t0 - PERIOD_S) * 1000
                out.write(f"{time.time():.4f} {lag_ms:.2f}\n")

        @asynccontextmanager
        async def lifespan(a: Any) -> AsyncIterator[Any]:
            async with inner(a) as state:
                with open(os.environ["LOOP_PROBE_FILE"], "a", buffering=1 << 16) as out:
                    task = asyncio.get_running_loop().create_task(beat(out))
                    try:
                        yield state
                    finally:
                        task.cancel()

        app.router.lifespan_context = lifespan
        return app

    _app_module.create_app = _probed_create_app
    import regcopilot.web.factory as _factory

    _factory.create_app = _probed_create_app
