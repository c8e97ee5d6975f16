"""background.stop ends a loop even when the loop swallows a cancellation."""

from __future__ import annotations

import asyncio

from regcopilot.background import stop


async def test_stop_ends_a_loop_that_swallows_the_first_cancel():
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed == 0:  # as a client library that turns it into an I/O error
                    swallowed += 1
                    continue
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await stop(task)
    assert task.done() and swallowed == 1


async def test_stop_accepts_none_and_finished_tasks():
    await stop(None)
    task = asyncio.create_task(asyncio.sleep(0))
    await task
    await stop(task)
