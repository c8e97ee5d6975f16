"""`regcopilot workspaces …`: the workspace API's operations from the shell. Writes go to the
workspace tables, whose triggers tell every running instance; the user's Redis entry is
dropped here too (as `users` commands do), for instances started later."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from regcopilot.cli_args import EmailAlias, OptionalUserArg, UserArg, one_user
from regcopilot.config import Settings
from regcopilot.tool import run, with_admin

app = typer.Typer(help="Manage workspaces (tenants) and their members.", no_args_is_help=True)
TenantArg = Annotated[str, typer.Argument(metavar="WORKSPACE", help="Workspace (tenant) id.")]


def _act(action: Any) -> None:
    """Run `action(store)` with a WorkspaceStore on the configured directory (the store's
    `settings` attribute is the configuration, for the invitation links)."""
    from regcopilot.workspaces.invitations import Refused
    from regcopilot.workspaces.store import NotFound, WorkspaceStore

    async def work(settings: Settings) -> None:
        async def with_admin_graph(admin: Any) -> None:
            store = WorkspaceStore(admin.directory, admin._invalidate)
            store.settings = settings  # type: ignore[attr-defined]
            try:
                await action(store)
            except (NotFound, Refused) as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from None

        await with_admin(settings, with_admin_graph)

    run(work)


async def _user_id(store: Any, who: str) -> str:
    from regcopilot.users.lookup import find_user

    return (await find_user(store.directory, who)).id


@app.command("list")
def list_(user: UserArg) -> None:
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
    owner: Annotated[str, typer.Option(metavar="USER", help="Owner's user id or email.")],
) -> None:
    """Create a team workspace owned by a user."""

    async def act(store: Any) -> None:
        created = await store.create_team(await _user_id(store, owner), name)
        typer.echo(f"created {created.name} id={created.id}")

    _act(act)


@app.command()
def members(tenant_id: TenantArg) -> None:
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
    tenant_id: TenantArg,
    user: OptionalUserArg = None,
    email: EmailAlias = None,
    role: Annotated[str, typer.Option(help="owner, admin, member or viewer.")] = "member",
) -> None:
    """Add a user to a workspace (or re-activate their membership)."""
    who = one_user(user, email)

    async def act(store: Any) -> None:
        from regcopilot.users.lookup import find_user
        from regcopilot.workspaces.store import NotFound

        if await store.get(tenant_id) is None:
            raise NotFound(f"no workspace with id {tenant_id}")
        member = await find_user(store.directory, who)
        added = await store.add_member(tenant_id, member.email, role)
        typer.echo(f"added {added['email']} to {tenant_id} as {role}")

    _act(act)


@app.command("remove-member")
def remove_member(tenant_id: TenantArg, user: UserArg) -> None:
    """Remove a member; their sessions leave the workspace at once."""

    async def act(store: Any) -> None:
        from regcopilot.workspaces.store import NotFound

        if not await store.remove_member(tenant_id, await _user_id(store, user)):
            raise NotFound("no such member")
        typer.echo(f"removed {user} from {tenant_id}")

    _act(act)


@app.command("set-role")
def set_role(tenant_id: TenantArg, user: UserArg,
             role: Annotated[str, typer.Argument(metavar="ROLE",
                                                 help="owner, admin, member or viewer.")]
             ) -> None:
    """Change a member's role; takes effect at once."""

    async def act(store: Any) -> None:
        from regcopilot.workspaces.store import NotFound

        if not await store.update_member(tenant_id, await _user_id(store, user), role=role):
            raise NotFound("no such member")
        typer.echo(f"{user} is now {role} in {tenant_id}")

    _act(act)


@app.command()
def invite(
    tenant_id: str,
    email: Annotated[str, typer.Option(help="The invitee's email.")],
    role: Annotated[str, typer.Option(help="admin, member or viewer.")] = "member",
    by: Annotated[str | None, typer.Option(
        help="Inviter's id or email (default: the workspace's owner).")] = None,
) -> None:
    """Invite an email into a workspace; prints the link to send (no mail is sent)."""

    async def act(store: Any) -> None:
        from regcopilot.workspaces.invitations import Invitations
        from regcopilot.workspaces.store import NotFound

        found = await store.get(tenant_id)
        if found is None:
            raise NotFound(f"no workspace with id {tenant_id}")
        inviter = await _user_id(store, by) if by else found[1]
        made = Invitations(store, store.settings.NEXTAUTH_URL)
        invitation = await made.create(tenant_id, email, role, inviter, by_manager_only=False)
        typer.echo(f"invited {invitation.email} to {invitation.workspace_name} as {role}"
                   f" (expires {invitation.expires_at:%Y-%m-%d %H:%M} UTC)")
        typer.echo(made.url(invitation.token))
        if await store.directory.find_by_email(invitation.email) is None:
            typer.echo("note: no account has that email yet; create one with"
                       " `regcopilot users add` before the invitee signs in", err=True)

    _act(act)


@app.command()
def invitations(tenant_id: Annotated[str | None, typer.Argument(
        help="Only this workspace's.")] = None) -> None:
    """Invitations not accepted yet (expired ones marked), with their links."""

    async def act(store: Any) -> None:
        from regcopilot.workspaces.invitations import Invitations

        made = Invitations(store, store.settings.NEXTAUTH_URL)
        typer.echo(f"{'id':36}  {'email':32}  {'role':6}  {'status':7}  {'expires (UTC)':16}"
                   "  workspace / link")
        for i in await made.unaccepted(tenant_id):
            typer.echo(f"{i.id:36}  {i.email:32}  {i.role:6}  {i.status:7}"
                       f"  {i.expires_at:%Y-%m-%d %H:%M}  {i.workspace_name}"
                       f"\n{'':36}  {made.url(i.token)}")

    _act(act)


@app.command()
def delete(tenant_id: str) -> None:
    """Soft-delete a team workspace; its members' sessions leave it at once. Restorable
    for 30 days."""

    async def act(store: Any) -> None:
        from regcopilot.workspaces.lifecycle import Lifecycle

        done = await Lifecycle(store).delete(tenant_id, None)
        typer.echo(f"deleted {done['workspace_name']} ({done['members_affected']} active"
                   f" member(s)); restore before {done['restore_before'][:16]} UTC")

    _act(act)


@app.command()
def restore(tenant_id: str) -> None:
    """Bring a deleted workspace back (within 30 days), with the memberships it had."""

    async def act(store: Any) -> None:
        from regcopilot.workspaces.lifecycle import Lifecycle

        done = await Lifecycle(store).restore(tenant_id, None)
        typer.echo(f"restored {done['workspace_name']} ({done['members_restored']}"
                   " membership(s))")

    _act(act)


@app.command()
def deleted() -> None:
    """Deleted workspaces, newest first, and until when each can be restored."""

    async def act(store: Any) -> None:
        from regcopilot.workspaces.lifecycle import Lifecycle

        typer.echo(f"{'id':36}  {'deleted (UTC)':16}  {'restore before':16}  {'members':7}  name")
        for w in await Lifecycle(store).deleted():
            typer.echo(f"{w['id']:36}  {w['deletedAt'][:16]:16}  {w['restoreBefore'][:16]:16}"
                       f"  {w['members']:7}  {w['name']}")

    _act(act)
