"""`regcopilot`: serve the app and administer users from the shell."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer

from regcopilot import cli_help  # noqa: F401  (Typer help without <bool> and {user})
from regcopilot.cli_args import EmailAlias, OptionalUserArg, UserArg, one_user
from regcopilot.cli_workspaces import app as workspaces_app
from regcopilot.config import SETTINGS_CHECKED, Settings
from regcopilot.factories import doctor_parts
from regcopilot.names import Revocation
from regcopilot.ops.cost import cost
from regcopilot.ops.doctor import doctor_command
from regcopilot.ops.monitor import monitor
from regcopilot.tool import VERBOSE, on_user, run, settings_or_exit, with_admin
from regcopilot.users.lookup import find_user

app = typer.Typer(help="Regulatory Intelligence Copilot web tier.", no_args_is_help=True)
users = typer.Typer(help="Manage users in the user directory.", no_args_is_help=True)
app.add_typer(users, name="users")
sessions_cli = typer.Typer(help="List and revoke users' sessions.", no_args_is_help=True)
app.add_typer(sessions_cli, name="sessions")
app.add_typer(workspaces_app, name="workspaces")

T = TypeVar("T")


@app.callback()
def _root(verbose: Annotated[bool, typer.Option(
    "--verbose", "-v", help="Say which user directory a command uses, even the default one.",
)] = False) -> None:
    VERBOSE["on"] = verbose


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

    from regcopilot.web.connections import SERVE_OPTIONS

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
    os.environ[SETTINGS_CHECKED] = "1"  # the workers load them again: say nothing twice
    setup_logging(settings.LOG_LEVEL)
    typer.echo(f"Regulatory Intelligence Copilot on http://{host}:{port} ({workers} worker(s))")
    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "log_level": settings.LOG_LEVEL.lower(),
        **SERVE_OPTIONS,
        "timeout_keep_alive": settings.HTTP_KEEPALIVE_TIMEOUT_SECONDS,
    }
    if workers > 1:  # SIGTERM drains each worker (web/drain.py); the supervisor lets go first
        from regcopilot.web.drain import run_workers

        run_workers(uvicorn.Config("regcopilot.web.factory:app", **options))
    else:
        uvicorn.run("regcopilot.web.factory:app", **options)


def _long_enough(password: str) -> None:
    if len(password) < 8:
        typer.echo("error: password must be at least 8 characters", err=True)
        raise typer.Exit(1)


async def _hashed(s: Settings, password: str) -> str:
    from regcopilot.auth.passwords import Hasher

    # In a thread: the directory's connection keeps its event loop answering meanwhile.
    return await asyncio.to_thread(Hasher(s.PASSWORD_HASH_ROUNDS).hash, password)


@users.command("add")
def users_add(
    email: Annotated[str, typer.Option(help="Sign-in email.")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, help="Password.")],
    admin: Annotated[bool, typer.Option(help="Give the admin role.")] = False,
    tenant: Annotated[str | None, typer.Option(help="Tenant id (app metadata).")] = None,
    name: Annotated[str | None, typer.Option(help="Full name.")] = None,
    unconfirmed: Annotated[bool, typer.Option(
        "--unconfirmed",
        help="Leave the email unconfirmed (Supabase Auth's schema): the user cannot sign in "
             "until it is confirmed, unless GOTRUE_MAILER_AUTOCONFIRM is true.")] = False,
) -> None:
    """Create a user as Supabase Auth's admin API does (bcrypt hash, confirmed email)."""
    _long_enough(password)

    async def work(s: Settings) -> None:
        async def act(ua: Any) -> None:
            hashed = await _hashed(s, password)
            user = await ua.directory.add(
                email, hashed, admin=admin, tenant_id=tenant, full_name=name,
                confirmed=not unconfirmed,
            )
            notes = [n for n, on in (("admin", admin), ("unconfirmed", unconfirmed)) if on]
            typer.echo(f"created {user.email} id={user.id}"
                       + (f" ({', '.join(notes)})" if notes else ""))

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
    user: UserArg,
    until: Annotated[datetime | None, typer.Option(help="End of the ban (ISO time).")] = None,
    seconds: Annotated[int | None, typer.Option(help="Length of the ban in seconds.")] = None,
) -> None:
    """Ban a user (indefinitely unless --until or --seconds); locked out at once."""

    async def act(ua: Any, found: Any, _s: Settings) -> str:
        end = await ua.ban(found.id, until, seconds)
        return f"banned {found.email} ({found.id}) until {end.isoformat()}"

    on_user(user, act)


@users.command("unban")
def users_unban(user: UserArg) -> None:
    """Lift a ban."""

    async def act(ua: Any, found: Any, _s: Settings) -> str:
        await ua.unban(found.id)
        return f"unbanned {found.email} ({found.id})"

    on_user(user, act)


@users.command("set-password")
def users_set_password(
    password: Annotated[str, typer.Option(prompt=True, hide_input=True,
                                          confirmation_prompt=True, help="New password.")],
    user_arg: OptionalUserArg = None,
    email: EmailAlias = None,
) -> None:
    """Set a user's password: every session signed in before it ends, on every instance."""
    who = one_user(user_arg, email)
    _long_enough(password)

    async def act(ua: Any, found: Any, s: Settings) -> str:
        await ua.set_password(found.id, await _hashed(s, password))
        return f"password set for {found.email}; earlier sessions ended"

    on_user(who, act)


@users.command("delete")
def users_delete(
    user: UserArg,
    soft: Annotated[bool, typer.Option(help="Set deleted_at instead of removing the row.")] = False,
) -> None:
    """Delete a user; locked out at once."""

    async def act(ua: Any, found: Any, _s: Settings) -> str:
        await ua.delete(found.id, soft=soft)
        return f"deleted {found.email} ({found.id}){' (soft)' if soft else ''}"

    on_user(user, act)


@users.command("invalidate")
def users_invalidate(user: UserArg) -> None:
    """Drop a user's cached validation on every instance."""

    async def act(ua: Any, found: Any, _s: Settings) -> str:
        await ua.invalidate(found.id)
        return f"invalidated {found.email} ({found.id})"

    on_user(user, act)


@sessions_cli.command("list")
def sessions_list(user_arg: OptionalUserArg = None, email: EmailAlias = None) -> None:
    """List a user's active sessions."""
    from regcopilot.users.session_stores import session_records
    from regcopilot.web.user_agents import browser_name

    who = one_user(user_arg, email)

    async def work(s: Settings) -> None:
        async def act(ua: Any) -> None:
            user = await find_user(ua.directory, who)
            rows = await session_records(ua.directory).active(user.id)
            typer.echo(f"{'id':36}  {'created (UTC)':16}  {'last seen':16}  {'address':15}  agent")
            for r in rows:
                seen = f"{r.seen_at:%Y-%m-%d %H:%M}"
                typer.echo(f"{r.id:36}  {r.created_at:%Y-%m-%d %H:%M}  {seen:16}  "
                           f"{r.address or '-':15}  {browser_name(r.user_agent) or '-'}")
            typer.echo(f"{len(rows)} active session(s) for {user.email}")

        await with_admin(s, act)

    run(work)


@sessions_cli.command("revoke")
def sessions_revoke(
    user_arg: OptionalUserArg = None,
    email: EmailAlias = None,
    all_: Annotated[bool, typer.Option("--all", help="Revoke every session.")] = False,
    session_id: Annotated[str | None, typer.Option("--id", help="Revoke this session.")] = None,
) -> None:
    """Revoke one session (--id) or all of them (--all); refused everywhere within a second."""
    from regcopilot.users.session_stores import session_records

    who = one_user(user_arg, email)
    if all_ == (session_id is not None):
        typer.echo("error: give exactly one of --all or --id", err=True)
        raise typer.Exit(2)

    async def work(s: Settings) -> None:
        async def act(ua: Any) -> None:
            user = await find_user(ua.directory, who)
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
app.command(name="doctor")(doctor_command(doctor_parts()))
app.command()(cost)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
