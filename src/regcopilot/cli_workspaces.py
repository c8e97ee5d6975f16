"""`regcopilot workspaces …`: the workspace API's operations from the shell. Writes go to the
workspace tables, whose triggers tell every running instance; the user's Redis entry is
dropped here too (as `users` commands do), for instances started later."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from regcopilot.config import Settings
from regcopilot.tool import run, with_admin

app = typer.Typer(help="Manage workspaces (tenants) and their members.", no_args_is_help=True)


def _act(action: Any) -> None:
    """Run `action(store)` with a WorkspaceStore on the configured directory."""
    from regcopilot.workspaces.store import NotFound, WorkspaceStore

    async def work(settings: Settings) -> None:
        async def with_admin_graph(admin: Any) -> None:
            try:
                await action(WorkspaceStore(admin.directory, admin._invalidate))
            except NotFound as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from None

        await with_admin(settings, with_admin_graph)

    run(work)


async def _user_id(store: Any, who: str) -> str:
    from regcopilot.workspaces.store import NotFound

    if "@" not in who:
        return who
    user = await store.directory.find_by_email(who)
    if user is None:
        raise NotFound(f"no user with email {who}")
    return user.id


@app.command("list")
def list_(user: Annotated[str, typer.Argument(help="User id or email.")]) -> None:
    """The workspaces a user can be in now; * marks the current one."""

    async def act(store: Any) -> None:
        user_id = await _user_id(store, user)
        current = (await store.current(user_id)).tenant_id
        typer.echo(f"  {'id':36}  {'type':8}  {'role':6}  name")
        for w in await store.list_for(user_id):
            mark = "*" if w.id == current else " "
            typer.echo(f"{mark} {w.id:36}  {w.type:8}  {w.role or '-':6}  {w.name}")

    _act(act)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Workspace name.")],
    owner: Annotated[str, typer.Option(help="Owner's user id or email.")],
) -> None:
    """Create a team workspace owned by a user."""

    async def act(store: Any) -> None:
        created = await store.create_team(await _user_id(store, owner), name)
        typer.echo(f"created {created.name} id={created.id}")

    _act(act)


@app.command()
def members(tenant_id: str) -> None:
    """List a workspace's members."""

    async def act(store: Any) -> None:
        from regcopilot.workspaces.store import NotFound

        if await store.get(tenant_id) is None:
            raise NotFound(f"no workspace with id {tenant_id}")
        typer.echo(f"{'user id':36}  {'email':32}  {'role':6}  status")
        for m in await store.members(tenant_id):
            typer.echo(f"{m['userId']:36}  {m['email']:32}  {m['role']:6}  {m['status']}")

    _act(act)


@app.command("add-member")
def add_member(
    tenant_id: str,
    email: Annotated[str, typer.Option(help="The member's sign-in email.")],
    role: Annotated[str, typer.Option(help="owner, admin, member or viewer.")] = "member",
) -> None:
    """Add a user to a workspace (or re-activate their membership)."""

    async def act(store: Any) -> None:
        from regcopilot.workspaces.store import NotFound

        if await store.get(tenant_id) is None:
            raise NotFound(f"no workspace with id {tenant_id}")
        added = await store.add_member(tenant_id, email, role)
        typer.echo(f"added {added['email']} to {tenant_id} as {role}")

    _act(act)


@app.command("remove-member")
def remove_member(tenant_id: str, user: Annotated[str, typer.Argument(help="Id or email.")],
                  ) -> None:
    """Remove a member; their sessions leave the workspace at once."""

    async def act(store: Any) -> None:
        from regcopilot.workspaces.store import NotFound

        if not await store.remove_member(tenant_id, await _user_id(store, user)):
            raise NotFound("no such member")
        typer.echo(f"removed {user} from {tenant_id}")

    _act(act)


@app.command("set-role")
def set_role(tenant_id: str, user: Annotated[str, typer.Argument(help="Id or email.")],
             role: str) -> None:
    """Change a member's role; takes effect at once."""

    async def act(store: Any) -> None:
        from regcopilot.workspaces.store import NotFound

        if not await store.update_member(tenant_id, await _user_id(store, user), role=role):
            raise NotFound("no such member")
        typer.echo(f"{user} is now {role} in {tenant_id}")

    _act(act)
