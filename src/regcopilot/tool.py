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
    """`action(admin)` on the admin graph (factories.build_admin), opened and closed around
    it; what can go wrong ends in one `error:` line and exit 1."""
    from regcopilot.factories import build_admin
    from regcopilot.users.admin import UnknownUser
    from regcopilot.users.directory import DirectoryUnavailable

    graph = build_admin(settings, lambda text: typer.echo(f"warning: {text}", err=True))
    try:
        await graph.open()
        return await action(graph.admin)
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
        await graph.close()
