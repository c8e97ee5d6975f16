"""`regcopilot`: serve the app and administer users from the shell."""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer

from regcopilot.cli_workspaces import app as workspaces_app
from regcopilot.config import Settings
from regcopilot.names import Revocation
from regcopilot.ops.cost import cost
from regcopilot.ops.doctor import doctor
from regcopilot.ops.monitor import monitor
from regcopilot.tool import run, settings_or_exit, with_admin

app = typer.Typer(help="Regulatory Intelligence Copilot web tier.", no_args_is_help=True)
users = typer.Typer(help="Manage users in the user directory.", no_args_is_help=True)
app.add_typer(users, name="users")
sessions_cli = typer.Typer(help="List and revoke users' sessions.", no_args_is_help=True)
app.add_typer(sessions_cli, name="sessions")
app.add_typer(workspaces_app, name="workspaces")

T = TypeVar("T")


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT", help="Port to bind ($PORT).")] = 3000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (needs REDIS_URL).")] = 1,
) -> None:
    """Run the web tier (uvicorn)."""
    import uvicorn

    from regcopilot.web.connections import GuardedHttpProtocol

    settings = settings_or_exit()
    if workers > 1 and not settings.REDIS_URL:
        typer.echo(
            "error: --workers > 1 needs REDIS_URL: each worker is its own process, and only "
            "Redis shares sessions, revocations and the cache between them",
            err=True,
        )
        raise typer.Exit(2)
    from regcopilot.web import preflight

    for problem in (lambda: preflight.port_problem(host, port),
                    lambda: preflight.database_problem(settings)):
        if (message := problem()) is not None:
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(1)
    if (generated := preflight.observability_token(settings)) is not None:
        typer.echo(generated, err=True)
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
        http=GuardedHttpProtocol,
        timeout_keep_alive=settings.HTTP_KEEPALIVE_TIMEOUT_SECONDS,  # type: ignore[arg-type]
    )


@users.command("add")
def users_add(
    email: Annotated[str, typer.Option(help="Sign-in email.")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, help="Password.")],
    admin: Annotated[bool, typer.Option(help="Give the admin role.")] = False,
    tenant: Annotated[str | None, typer.Option(help="Tenant id (app metadata).")] = None,
    name: Annotated[str | None, typer.Option(help="Full name.")] = None,
) -> None:
    """Create a user (bcrypt hash, as Supabase stores it)."""
    from regcopilot.auth.passwords import Hasher

    if len(password) < 8:
        typer.echo("error: password must be at least 8 characters", err=True)
        raise typer.Exit(1)

    async def work(s: Settings) -> None:
        async def act(ua: Any) -> None:
            # In a thread: the directory's connection keeps its event loop answering meanwhile.
            hashed = await asyncio.to_thread(Hasher(s.PASSWORD_HASH_ROUNDS).hash, password)
            user = await ua.directory.add(
                email, hashed, admin=admin, tenant_id=tenant, full_name=name
            )
            typer.echo(f"created {user.email} id={user.id}{' (admin)' if admin else ''}")

        await with_admin(s, act)

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

        await with_admin(s, act)

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

        await with_admin(s, act)

    run(work)


@users.command("unban")
def users_unban(user_id: str) -> None:
    """Lift a ban."""

    async def work(s: Settings) -> None:
        async def act(ua: Any) -> None:
            await ua.unban(user_id)
            typer.echo(f"unbanned {user_id}")

        await with_admin(s, act)

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

        await with_admin(s, act)

    run(work)


@users.command("invalidate")
def users_invalidate(user_id: str) -> None:
    """Drop a user's cached validation on every instance."""

    async def work(s: Settings) -> None:
        async def act(ua: Any) -> None:
            await ua.invalidate(user_id)
            typer.echo(f"invalidated {user_id}")

        await with_admin(s, act)

    run(work)


async def _user_by_email(ua: Any, email: str) -> Any:
    user = await ua.directory.find_by_email(email)
    if user is None:
        typer.echo(f"error: no user with email {email}", err=True)
        raise typer.Exit(1)
    return user


@sessions_cli.command("list")
def sessions_list(email: Annotated[str, typer.Option(help="The user's email.")]) -> None:
    """List a user's active sessions."""
    from regcopilot.users.sessions import session_records

    async def work(s: Settings) -> None:
        async def act(ua: Any) -> None:
            user = await _user_by_email(ua, email)
            rows = await session_records(ua.directory).active(user.id)
            typer.echo(f"{'id':32}  {'created (UTC)':16}  {'last seen':16}  {'address':15}  agent")
            for r in rows:
                seen = f"{r.last_seen_at:%Y-%m-%d %H:%M}" if r.last_seen_at else "-"
                typer.echo(f"{r.id:32}  {r.created_at:%Y-%m-%d %H:%M}  {seen:16}  "
                           f"{r.address or '-':15}  {(r.user_agent or '-')[:60]}")
            typer.echo(f"{len(rows)} active session(s) for {user.email}")

        await with_admin(s, act)

    run(work)


@sessions_cli.command("revoke")
def sessions_revoke(
    email: Annotated[str, typer.Option(help="The user's email.")],
    all_: Annotated[bool, typer.Option("--all", help="Revoke every session.")] = False,
    session_id: Annotated[str | None, typer.Option("--id", help="Revoke this session.")] = None,
) -> None:
    """Revoke one session (--id) or all of them (--all); refused everywhere within a second."""
    from regcopilot.users.sessions import session_records

    if all_ == (session_id is not None):
        typer.echo("error: give exactly one of --all or --id", err=True)
        raise typer.Exit(2)

    async def work(s: Settings) -> None:
        async def act(ua: Any) -> None:
            user = await _user_by_email(ua, email)
            records = session_records(ua.directory)
            if session_id is None:
                n = len(await records.revoke_all(user.id, Revocation.ADMIN))
                typer.echo(f"revoked {n} session(s) of {user.email}")
                return
            if await records.revoke(session_id, Revocation.ADMIN, user_id=user.id) is None:
                typer.echo(f"error: {user.email} has no active session {session_id}", err=True)
                raise typer.Exit(1)
            typer.echo(f"revoked session {session_id} of {user.email}")

        await with_admin(s, act)

    run(work)


# Operator tools (regcopilot/ops): the guide's monitoring, troubleshooting and cost model.
app.command()(monitor)
app.command()(doctor)
app.command()(cost)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
