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
VERBOSE = {"on": False}  # `regcopilot -v`: name the directory even when it is the default


def directory_note(settings: Settings) -> str | None:
    """`directory: …` unless it is the README's default file, already there: a shell without
    the server's DATABASE_URL would otherwise read another file without a word. Printed after
    a command's output, or at the end of its one error line."""
    from regcopilot import where

    if VERBOSE["on"] or where.worth_saying(settings.DATABASE_URL):
        return f"directory: {where.directory(settings.DATABASE_URL)}"
    return None


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
    from regcopilot.users.lookup import unknown

    note = directory_note(settings)

    def failed(message: str) -> typer.Exit:
        typer.echo(f"error: {message}" + (f" ({note})" if note else ""), err=True)
        return typer.Exit(1)

    graph = build_admin(settings, lambda text: typer.echo(f"warning: {text}", err=True))
    try:
        await graph.open()
        result = await action(graph.admin)
    except DirectoryUnavailable as exc:
        raise failed(f"user directory unavailable: {exc}") from None
    except UnknownUser as exc:
        raise failed(unknown(exc)) from None
    except ValueError as exc:
        raise failed(str(exc)) from None
    finally:
        await graph.close()
    if note:
        typer.echo(note, err=True)
    return result


def on_user(who: str, act: Callable[[Any, Any, Settings], Awaitable[str]]) -> None:
    """The shape of every `users` command that acts on one user: settings, the admin graph,
    the user named by id or email (users/lookup.py), then `act(admin, user, settings)`, whose
    answer is printed."""
    from regcopilot.users.lookup import find_user

    async def work(settings: Settings) -> None:
        async def action(admin: Any) -> None:
            found = await find_user(admin.directory, who)
            typer.echo(await act(admin, found, settings))

        await with_admin(settings, action)

    run(work)
