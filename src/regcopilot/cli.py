"""`regcopilot`: serve the app and administer users from the shell."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer

from regcopilot.config import ConfigError, Settings, load_settings
from regcopilot.ops.cost import cost
from regcopilot.ops.doctor import doctor
from regcopilot.ops.monitor import monitor
from regcopilot.workspaces.cli import app as workspaces_app

app = typer.Typer(help="Regulatory Intelligence Copilot web tier.", no_args_is_help=True)
users = typer.Typer(help="Manage users in the user directory.", no_args_is_help=True)
app.add_typer(users, name="users")
app.add_typer(workspaces_app, name="workspaces")

T = TypeVar("T")


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 3000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (needs REDIS_URL).")] = 1,
) -> None:
    """Run the web tier (uvicorn)."""
    import uvicorn

    settings = settings_or_exit()
    if workers > 1 and not settings.REDIS_URL:
        typer.echo(
            "error: --workers > 1 needs REDIS_URL: each worker is its own process, and only "
            "Redis shares sessions, revocations and the cache between them",
            err=True,
        )
        raise typer.Exit(2)
    setup_logging(settings.LOG_LEVEL)
    typer.echo(f"Regulatory Intelligence Copilot on http://{host}:{port} ({workers} worker(s))")
    uvicorn.run(
        "regcopilot.web.factory:app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.LOG_LEVEL.lower(),
        access_log=False,
        proxy_headers=True,
    )


def run(work: Callable[[Settings], Awaitable[T]]) -> T:
    settings = settings_or_exit()
    try:
        return asyncio.run(work(settings))
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


async def _with_admin(settings: Settings, action: Callable[[Any], Awaitable[T]]) -> T:
    from regcopilot.cache.redis import FAILURES, RedisStore
    from regcopilot.users.admin import UnknownUser, UserAdmin
    from regcopilot.users.directory import DirectoryUnavailable, open_directory

    directory = open_directory(settings.DATABASE_URL, timeout=settings.DATABASE_TIMEOUT_SECONDS)
    store = RedisStore(settings.REDIS_URL, timeout_ms=1000) if settings.REDIS_URL else None

    async def drop_shared(user_id: str) -> None:
        # Running instances hear the directory's trigger; Redis is cleared here too so an
        # instance started later cannot read the stale entry.
        if store is not None:
            try:
                await store.client.delete(f"{settings.REDIS_KEY_PREFIX}validation:{user_id}")
            except FAILURES as exc:
                typer.echo(f"warning: Redis not cleared ({exc})", err=True)

    try:
        await directory.open()
        return await action(UserAdmin(directory, drop_shared))
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


@users.command("add")
def users_add(
    email: Annotated[str, typer.Option(help="Sign-in email.")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, help="Password.")],
    admin: Annotated[bool, typer.Option(help="Give the admin role.")] = False,
    tenant: Annotated[str | None, typer.Option(help="Tenant id (app metadata).")] = None,
    name: Annotated[str | None, typer.Option(help="Full name.")] = None,
) -> None:
    """Create a user (bcrypt hash, as Supabase stores it)."""
    from regcopilot.auth.passwords import hash_password

    if len(password) < 8:
        typer.echo("error: password must be at least 8 characters", err=True)
        raise typer.Exit(1)

    async def work(s: Settings) -> None:
        async def act(ua: Any) -> None:
            user = await ua.directory.add(
                email, hash_password(password), admin=admin, tenant_id=tenant, full_name=name
            )
            typer.echo(f"created {user.email} id={user.id}{' (admin)' if admin else ''}")

        await _with_admin(s, act)

    run(work)


@users.command("list")
def users_list(limit: Annotated[int, typer.Option(min=1)] = 100) -> None:
    """List users with their state."""

    async def work(s: Settings) -> None:
        async def act(ua: Any) -> None:
            rows = await ua.directory.list(limit)
            typer.echo(f"{'id':36}  {'email':32}  {'role':6}  state")
            for u in rows:
                state = "deleted" if u.deleted_at else (
                    f"banned until {u.banned_until:%Y-%m-%d %H:%M}"
                    if u.banned_until and u.banned_until > datetime.now(UTC)
                    else "active"  # an expired ban lets the user in: say so
                )
                typer.echo(f"{u.id:36}  {u.email:32}  {u.role or '-':6}  {state}")

        await _with_admin(s, act)

    run(work)


@users.command("ban")
def users_ban(
    user_id: str,
    until: Annotated[datetime | None, typer.Option(help="End of the ban (ISO time).")] = None,
    seconds: Annotated[int | None, typer.Option(help="Length of the ban in seconds.")] = None,
) -> None:
    """Ban a user (indefinitely unless --until or --seconds); locked out at once."""

    async def work(s: Settings) -> None:
        async def act(ua: Any) -> None:
            end = await ua.ban(user_id, until, seconds)
            typer.echo(f"banned {user_id} until {end.isoformat()}")

        await _with_admin(s, act)

    run(work)


@users.command("unban")
def users_unban(user_id: str) -> None:
    """Lift a ban."""

    async def work(s: Settings) -> None:
        async def act(ua: Any) -> None:
            await ua.unban(user_id)
            typer.echo(f"unbanned {user_id}")

        await _with_admin(s, act)

    run(work)


@users.command("delete")
def users_delete(
    user_id: str,
    soft: Annotated[bool, typer.Option(help="Set deleted_at instead of removing the row.")] = False,
) -> None:
    """Delete a user; locked out at once."""

    async def work(s: Settings) -> None:
        async def act(ua: Any) -> None:
            await ua.delete(user_id, soft=soft)
            typer.echo(f"deleted {user_id}{' (soft)' if soft else ''}")

        await _with_admin(s, act)

    run(work)


@users.command("invalidate")
def users_invalidate(user_id: str) -> None:
    """Drop a user's cached validation on every instance."""

    async def work(s: Settings) -> None:
        async def act(ua: Any) -> None:
            await ua.invalidate(user_id)
            typer.echo(f"invalidated {user_id}")

        await _with_admin(s, act)

    run(work)


# Operator tools (regcopilot/ops): the guide's monitoring, troubleshooting and cost model.
app.command()(monitor)
app.command()(doctor)
app.command()(cost)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
