"""Stopping background loops for certain.

A loop that catches its I/O errors can swallow a cancellation: some client libraries turn a
CancelledError that lands mid-read into a timeout or connection error, which such a loop
handles and carries on from. Awaiting that task after one cancel() then waits forever (a hang
seen once in CI at shutdown). So cancel again until the task is really done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger("regcopilot")

ATTEMPTS = 20
WAIT_SECONDS = 0.25


def cancelling() -> bool:
    """True inside a task that has been asked to stop, whatever error the await raised."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def stop(task: asyncio.Task | None) -> None:
    if task is None:
        return
    for _ in range(ATTEMPTS):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=WAIT_SECONDS)
    else:
        log.warning("Background task %s did not stop", task.get_name())
        return
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
