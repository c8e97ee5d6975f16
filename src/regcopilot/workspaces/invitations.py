"""Workspace invitations, on the upstream's table (copilot_core.workspace_invitations) and with
its rules: an owner or admin invites an email into a workspace with a role (admin, member or
viewer); the link carries a token of 32 random bytes (hex) that expires after 7 days; only the
signed-in user with that email can accept it; a cancelled invitation is deleted, as the
upstream's cancel_workspace_invitation does. The upstream's RPCs (get_my_pending_invitations,
accept_workspace_invitation, ...) read and write the same rows.

No mail is sent: the link is returned to the inviter, shown in the admin console and the CLI,
and logged once at INFO (docs/workspaces.md: wiring a mailer)."""

from __future__ import annotations

import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from regcopilot.users.dialect import ACTIVE
from regcopilot.users.directory import User, is_uuid, normalize_email
from regcopilot.users.rows import as_datetime
from regcopilot.users.workspace_schema import INVITE_ROLES
from regcopilot.workspaces.store import MANAGERS, WorkspaceStore
from regcopilot.workspaces.store import _param as db_param
from regcopilot.workspaces.store import _time as db_time

log = logging.getLogger("regcopilot.workspaces")

INVITATION_DAYS = 7
TOKEN_BYTES = 32
TOKEN_SHAPE = re.compile(r"[0-9a-f]{64}")
MAX_EMAIL = 320
# Deliberately loose (one @, a dotted domain, no spaces): the invitee proves the address by
# signing in with it; this only keeps typos like "bob" or "bob@" out of the table.
EMAIL_SHAPE = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+")


class Refused(Exception):
    """An invitation request that cannot be done: an HTTP status and one clear message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True, slots=True)
class Invitation:
    id: str
    tenant_id: str
    email: str
    role: str
    invited_by: str
    token: str
    expires_at: datetime
    accepted_at: datetime | None
    created_at: datetime | None
    workspace_name: str
    workspace_slug: str | None
    workspace_deleted: bool
    inviter_email: str | None

    @property
    def expired(self) -> bool:
        return self.expires_at <= datetime.now(UTC)

    @property
    def status(self) -> str:
        if self.accepted_at is not None:
            return "accepted"
        return "expired" if self.expired else "pending"

    def public(self) -> dict[str, Any]:
        """The upstream's get_my_pending_invitations row, camel-cased like its other answers."""
        return {
            "id": self.id, "workspaceId": self.tenant_id, "workspaceName": self.workspace_name,
            "workspaceSlug": self.workspace_slug, "email": self.email, "role": self.role,
            "invitedByEmail": self.inviter_email, "expiresAt": iso(self.expires_at),
            "createdAt": iso(self.created_at), "status": self.status,
        }


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def valid_email(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_EMAIL:
        raise Refused(400, "a valid email address is required")
    email = normalize_email(value)
    if not EMAIL_SHAPE.fullmatch(email) or not email.isprintable():
        raise Refused(400, "a valid email address is required")
    return email


def valid_role(value: object) -> str:
    if value not in INVITE_ROLES:
        raise Refused(400, f"role must be one of {', '.join(INVITE_ROLES)}")
    assert isinstance(value, str)
    return value


SELECT = (
    "SELECT i.id, i.tenant_id, i.email, i.role, i.invited_by, i.token, i.expires_at,"
    " i.accepted_at, i.created_at, t.name, t.slug, t.deleted_at, u.email"
    " FROM {invitations} i JOIN {tenants} t ON t.id = i.tenant_id"
    " LEFT JOIN {users} u ON u.id = i.invited_by"
)


def _invitation(row: tuple) -> Invitation:
    expires = as_datetime(row[6])
    assert expires is not None
    return Invitation(
        id=str(row[0]), tenant_id=str(row[1]), email=row[2], role=row[3],
        invited_by=str(row[4]), token=row[5], expires_at=expires,
        accepted_at=as_datetime(row[7]), created_at=as_datetime(row[8]),
        workspace_name=row[9], workspace_slug=row[10], workspace_deleted=row[11] is not None,
        inviter_email=row[12],
    )


class Invitations:
    def __init__(self, store: WorkspaceStore, base_url: str) -> None:
        self.store = store
        self.base_url = base_url.rstrip("/")

    def url(self, token: str) -> str:
        return f"{self.base_url}/invite/{token}"

    async def _find(self, where: str, *params: Any) -> list[Invitation]:
        rows = await self.store._rows(f"{SELECT} WHERE {where}", *params)
        return [_invitation(r) for r in rows]

    # --- reads ----------------------------------------------------------------------
    async def pending_for(self, email: str) -> list[Invitation]:
        """What the upstream's get_my_pending_invitations answers: unaccepted, unexpired,
        workspace not deleted, newest first."""
        return await self._find(
            "i.email = {p} AND i.accepted_at IS NULL AND i.expires_at > {now}"
            " AND t.deleted_at IS NULL ORDER BY i.created_at DESC",
            normalize_email(email),
        )

    async def unaccepted(self, tenant_id: str | None = None, limit: int = 200,
                         ) -> list[Invitation]:
        """Invitations not accepted yet (expired ones too, marked so), for the console/CLI."""
        if tenant_id is not None:
            if not is_uuid(tenant_id):
                return []
            return await self._find("i.tenant_id = {p} AND i.accepted_at IS NULL"
                                    " ORDER BY i.created_at DESC", tenant_id)
        return await self._find(
            "i.accepted_at IS NULL ORDER BY i.created_at DESC LIMIT {p}", limit)

    async def by_token(self, token: str) -> Invitation | None:
        if not TOKEN_SHAPE.fullmatch(token):
            return None
        found = await self._find("i.token = {p}", token)
        return found[0] if found else None

    # --- writes ---------------------------------------------------------------------
    async def create(self, tenant_id: str, email: object, role: object, invited_by: str,
                     *, by_manager_only: bool = True) -> Invitation:
        """Invite `email` into the workspace. `by_manager_only` False: the CLI (an operator
        acting for the workspace, `invited_by` its owner)."""
        role, email = valid_role(role), valid_email(email)
        ws = self.store
        found = await ws.get(tenant_id)
        if found is None:
            raise Refused(404, "no such workspace")
        workspace, _owner = found
        if by_manager_only and await ws.role_of(invited_by, tenant_id) not in MANAGERS:
            raise Refused(403, "only workspace owners and admins can invite members")
        member = await ws._rows(
            "SELECT 1 FROM {members} m JOIN {users} u ON u.id = m.user_id"
            " JOIN {tenants} t ON t.id = m.tenant_id"
            f" WHERE m.tenant_id = {{p}} AND u.email = {{p}} AND {ACTIVE}", tenant_id, email)
        if member:
            raise Refused(409, "that user is already a member of this workspace")
        token = secrets.token_hex(TOKEN_BYTES)
        invitation_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        expires = now + timedelta(days=INVITATION_DAYS)
        try:
            await ws.directory.batch([
                # An expired, never accepted invitation would hold the (workspace, email)
                # unique index forever: it makes way for the new one.
                (ws._sql("DELETE FROM {invitations} WHERE tenant_id = {p} AND email = {p}"
                         " AND accepted_at IS NULL AND expires_at <= {now}"),
                 (db_param(ws, tenant_id), email)),
                (ws._sql("INSERT INTO {invitations} (id, tenant_id, email, role, invited_by,"
                         " token, expires_at, created_at)"
                         " VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"),
                 (db_param(ws, invitation_id), db_param(ws, tenant_id), email, role,
                  db_param(ws, invited_by), token, db_time(ws, expires), db_time(ws, now))),
            ])
        except ValueError:  # the unique index: a pending invitation exists (maybe just made)
            raise Refused(409, "that email already has a pending invitation to this workspace"
                          ) from None
        invitation = Invitation(
            invitation_id, tenant_id, email, role, invited_by, token, expires, None, now,
            workspace.name, workspace.slug, False, None)
        log.info("Workspace invitation for %s to %s (%s) as %s: %s", email, workspace.name,
                 tenant_id, role, self.url(token))
        return invitation

    async def cancel(self, invitation_id: str, by_user_id: str | None) -> None:
        """Delete an unaccepted invitation (by an owner or admin of its workspace; None: the
        CLI's operator)."""
        found = await self._find("i.id = {p} AND i.accepted_at IS NULL", invitation_id) \
            if is_uuid(invitation_id) else []
        if not found:
            raise Refused(404, "invitation not found or already accepted")
        invitation = found[0]
        if by_user_id is not None and (
                await self.store.role_of(by_user_id, invitation.tenant_id) not in MANAGERS):
            raise Refused(403, "only workspace owners and admins can cancel invitations")
        await self.store.directory.batch([(
            self.store._sql("DELETE FROM {invitations} WHERE id = {p} AND accepted_at IS NULL"),
            (db_param(self.store, invitation_id),))])

    async def accept(self, token: str, user: User) -> dict[str, Any]:
        """Join the invitation's workspace with its role. Accepting again (or being a member
        already) answers alreadyMember instead of failing."""
        ws = self.store
        invitation = await self.by_token(token)
        if invitation is None:
            raise Refused(400, "this invitation is not valid: unknown or cancelled")
        if normalize_email(user.email) != invitation.email:
            raise Refused(403, "this invitation was sent to a different email address")
        if invitation.workspace_deleted:
            raise Refused(400, "the workspace of this invitation was deleted")
        member_role = await ws.role_of(user.id, invitation.tenant_id)
        if invitation.accepted_at is not None:
            if member_role is None:
                raise Refused(400, "this invitation has already been used")
            return _accepted(invitation.tenant_id, member_role, already=True)
        if invitation.expired:
            raise Refused(400, "this invitation has expired")
        tid, uid = db_param(ws, invitation.tenant_id), db_param(ws, user.id)
        mark = (ws._sql("UPDATE {invitations} SET accepted_at = {now}"
                        " WHERE id = {p} AND accepted_at IS NULL"),
                (db_param(ws, invitation.id),))
        if member_role is not None:  # a member already (e.g. added directly): as upstream
            await ws.directory.batch([mark])
            return _accepted(invitation.tenant_id, member_role, already=True)
        # A removed or suspended membership is made active again with the invited role.
        join = (ws._sql(
            "INSERT INTO {members} (id, tenant_id, user_id, role, status, invited_by,"
            " joined_at) VALUES ({p}, {p}, {p}, {p}, 'active', {p}, {now})"
            " ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = excluded.role,"
            " status = 'active', deleted_at = NULL, invited_by = excluded.invited_by,"
            " joined_at = excluded.joined_at, updated_at = {now}"),
            (db_param(ws, str(uuid.uuid4())), tid, uid, invitation.role,
             db_param(ws, invitation.invited_by)))
        marked, _joined = await ws.directory.batch([mark, join])
        if not marked:  # accepted meanwhile (a second click): undo nothing, say so
            role = await ws.role_of(user.id, invitation.tenant_id)
            return _accepted(invitation.tenant_id, role or invitation.role, already=True)
        await ws._touched(user.id)
        log.info("Workspace invitation accepted: %s joined %s as %s", user.email,
                 invitation.tenant_id, invitation.role)
        return _accepted(invitation.tenant_id, invitation.role, already=False)


def _accepted(tenant_id: str, role: str, *, already: bool) -> dict[str, Any]:
    # tenantId as the issue names it; workspaceId is what the upstream's route answers.
    return {"success": True, "tenantId": tenant_id, "workspaceId": tenant_id, "role": role,
            "alreadyMember": already}
