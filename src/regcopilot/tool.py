"""What every shell command shares: settings (or exit 2), an event loop, and the admin graph
— the directory, the Redis store and the session records a command acts through, opened and
closed around it. `regcopilot` (cli.py) and `regcopilot workspaces` (cli_workspaces.py) both
use it, so neither imports the other."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

from regcopilot.config import ConfigError, Settings, load_settings

T = TypeVar("T")


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None



def run(work: Callable[[Settings], Awaitable[T]]) -> T:
    settings = settings_or_exit()
    try:
        return asyncio.run(work(settings))
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


async def with_admin(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    from regcopilot.cache.store import StoreError
    from regcopilot.factories import (
        TOOL_REDIS_TIMEOUT_MS,
        build_directory,
        build_keys,
        build_store,
    )
    from regcopilot.users.admin import UnknownUser, UserAdmin
    from regcopilot.users.directory import DirectoryUnavailable

    directory = build_directory(settings)
    store = build_store(settings, timeout_ms=TOOL_REDIS_TIMEOUT_MS)
    keys = build_keys(settings)

    async def drop_shared(user_id: str) -> None:
        # Running instances hear the directory's trigger; Redis is cleared here too so an
        # instance started later cannot read the stale entry.
        if store is not None:
            try:
                await store.delete(keys.validation(user_id))
            except StoreError as exc:
                typer.echo(f"warning: Redis not cleared ({exc})", err=True)

    from regcopilot.users.sessions import session_records

    records = session_records(directory)

    async def end_sessions(user_id: str, reason: str) -> int:
        # Written to the session records: the table's trigger tells every running instance.
        return len(await records.revoke_all(user_id, reason))

    try:
        await directory.open()
        return await action(UserAdmin(directory, drop_shared, end_sessions))
    except DirectoryUnavailable as exc:
        typer.echo(f"error: user directory unavailable: {exc}", err=True)
        raise typer.Exit(1) from None
    except UnknownUser as exc:
        typer.echo(f"error: no user with id {exc}", err=True)
        raise typer.Exit(1) from None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        await directory.close()
        if store is not None:
            await store.close()


