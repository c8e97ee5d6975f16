"""Deleting a workspace and restoring it, with the upstream's rules (its delete_workspace and
restore_workspace): a soft delete (`tenants.deleted_at`, `deleted_by`, and the memberships'
`deleted_at` stamped with the same instant); a personal workspace cannot be deleted; only an
owner deletes; a restore within 30 days brings the workspace and exactly those memberships back.

Nothing here moves sessions: the tenants' trigger announces every member on the change feed,
every instance drops their cached validations, and the next request of a member who was in
the deleted workspace is served in another one (X-Workspace-Changed, re-issued cookie), as
for any lost access. The same happens for a plain `UPDATE ... SET deleted_at = now()`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from regcopilot.users.directory import is_uuid
from regcopilot.users.rows import as_datetime
from regcopilot.workspaces.invitations import Refused, iso
from regcopilot.workspaces.store import WorkspaceStore
from regcopilot.workspaces.store import _param as db_param
from regcopilot.workspaces.store import _time as db_time

GRACE_DAYS = 30


class Lifecycle:
    def __init__(self, store: WorkspaceStore) -> None:
        self.store = store

    async def _tenant(self, tenant_id: str) -> tuple[Any, ...]:
        rows = await self.store._rows(
            "SELECT id, name, type, deleted_at, deleted_by FROM {tenants} WHERE id = {p}",
            tenant_id) if is_uuid(tenant_id) else []
        if not rows:
            raise Refused(404, "no such workspace")
        return rows[0]

    async def _members(self, tenant_id: str) -> list[str]:
        rows = await self.store._rows(
            "SELECT user_id FROM {members} WHERE tenant_id = {p}", tenant_id)
        return [str(r[0]) for r in rows]

    async def delete(self, tenant_id: str, by_user_id: str | None) -> dict[str, Any]:
        """Soft-delete; `by_user_id` must be an active owner (None: the CLI's operator)."""
        ws = self.store
        _id, name, kind, deleted_at, _by = await self._tenant(tenant_id)
        if deleted_at is not None:
            raise Refused(404, "no such workspace (it is deleted)")
        if kind == "personal":
            raise Refused(400, "personal workspaces cannot be deleted")
        if by_user_id is not None and await ws.role_of(by_user_id, tenant_id) != "owner":
            raise Refused(403, "only the workspace's owners can delete it")
        members = await self._members(tenant_id)
        now = datetime.now(UTC)
        stamp, tid = db_time(ws, now), db_param(ws, tenant_id)
        by = db_param(ws, by_user_id) if by_user_id is not None else None
        counted, _memberships = await ws.directory.batch([
            (ws._sql("UPDATE {tenants} SET deleted_at = {p}, deleted_by = {p}, updated_at = {now}"
                     " WHERE id = {p} AND deleted_at IS NULL"), (stamp, by, tid)),
            (ws._sql("UPDATE {members} SET deleted_at = {p}, updated_at = {now}"
                     " WHERE tenant_id = {p} AND deleted_at IS NULL"), (stamp, tid)),
        ])
        if not counted:
            raise Refused(404, "no such workspace (it is deleted)")
        await ws._touched(*members)
        active = await ws._rows(
            "SELECT count(*) FROM {members} WHERE tenant_id = {p} AND status = 'active'"
            " AND deleted_at = {p}", tenant_id, stamp)
        # The upstream's delete_workspace answer.
        return {"success": True, "deleted_at": now.isoformat(), "workspace_name": name,
                "members_affected": int(active[0][0]), "grace_period_days": GRACE_DAYS,
                "restore_before": (now + timedelta(days=GRACE_DAYS)).isoformat()}

    async def restore(self, tenant_id: str, by_user_id: str | None) -> dict[str, Any]:
        """Undo a delete within GRACE_DAYS: by whoever deleted it or an owner of it (None:
        the CLI's operator). The memberships the delete stamped come back, no others."""
        ws = self.store
        _id, name, _kind, deleted_raw, deleted_by = await self._tenant(tenant_id)
        deleted_at = as_datetime(deleted_raw)
        if deleted_at is None:
            raise Refused(400, "workspace is not deleted")
        if by_user_id is not None and str(deleted_by) != by_user_id:
            owner = await ws._rows(
                "SELECT 1 FROM {members} WHERE tenant_id = {p} AND user_id = {p}"
                " AND role = 'owner' AND status = 'active'", tenant_id, by_user_id) \
                if is_uuid(by_user_id) else []
            if not owner:
                raise Refused(403, "only the workspace's owners can restore it")
        if datetime.now(UTC) - deleted_at > timedelta(days=GRACE_DAYS):
            raise Refused(400, f"grace period of {GRACE_DAYS} days expired: the workspace"
                               " cannot be restored")
        tid = db_param(ws, tenant_id)
        members = await self._members(tenant_id)
        counted, restored = await ws.directory.batch([
            (ws._sql("UPDATE {tenants} SET deleted_at = NULL, deleted_by = NULL,"
                     " updated_at = {now} WHERE id = {p} AND deleted_at = {p}"),
             (tid, deleted_raw)),
            (ws._sql("UPDATE {members} SET deleted_at = NULL, updated_at = {now}"
                     " WHERE tenant_id = {p} AND deleted_at = {p}"), (tid, deleted_raw)),
        ])
        if not counted:
            raise Refused(409, "the workspace changed meanwhile; try again")
        await ws._touched(*members)
        # The upstream's restore_workspace answer.
        return {"success": True, "restored_at": datetime.now(UTC).isoformat(),
                "workspace_name": name, "members_restored": restored,
                "was_deleted_at": deleted_at.isoformat()}

    async def details(self, tenant_id: str, user_id: str) -> dict[str, Any]:
        """The upstream's GET /api/workspaces/{id}: the workspace, deleted or not, and the
        caller's membership (any status: a restore page needs it after the delete)."""
        rows = await self.store._rows(
            "SELECT t.id, t.name, t.slug, t.type, t.plan, t.deleted_at, t.deleted_by,"
            " t.created_at FROM {tenants} t WHERE t.id = {p}", tenant_id) \
            if is_uuid(tenant_id) else []
        if not rows:
            raise Refused(404, "workspace not found")
        tenant, name, slug, kind, plan, deleted_raw, deleted_by, created = rows[0]
        membership = await self.store._rows(
            "SELECT role, status, joined_at, deleted_at FROM {members}"
            " WHERE tenant_id = {p} AND user_id = {p}", tenant_id, user_id) \
            if is_uuid(user_id) else []
        if not membership:
            raise Refused(403, "not a member of this workspace")
        role, status, joined, member_deleted = membership[0]
        deleted_at = as_datetime(deleted_raw)
        can_restore, deadline, days_left = False, None, None
        if deleted_at is not None:
            days_left = GRACE_DAYS - (datetime.now(UTC) - deleted_at).days
            until = deleted_at + timedelta(days=GRACE_DAYS)
            can_restore = until > datetime.now(UTC) and (
                str(deleted_by) == user_id or (role == "owner" and status == "active"))
            deadline = until.isoformat() if can_restore else None
        return {
            "workspace": {"id": str(tenant), "name": name, "slug": slug, "type": kind,
                          "plan": plan, "deleted_at": iso(deleted_at),
                          "deleted_by": str(deleted_by) if deleted_by else None,
                          "created_at": iso(as_datetime(created)), "canRestore": can_restore,
                          "restoreDeadline": deadline,
                          "daysUntilPermanentDeletion": days_left},
            "membership": {"role": role, "status": status,
                           "joined_at": iso(as_datetime(joined)),
                           "deleted_at": iso(as_datetime(member_deleted))},
        }

    async def deleted(self, limit: int = 200) -> list[dict[str, Any]]:
        """Deleted workspaces, newest first, with who deleted them and until when they can
        be restored (for the admin console and the CLI)."""
        rows = await self.store._rows(
            "SELECT t.id, t.name, t.type, t.deleted_at, u.email,"
            " (SELECT count(*) FROM {members} m WHERE m.tenant_id = t.id"
            "  AND m.deleted_at = t.deleted_at)"
            " FROM {tenants} t LEFT JOIN {users} u ON u.id = t.deleted_by"
            " WHERE t.deleted_at IS NOT NULL ORDER BY t.deleted_at DESC LIMIT {p}", limit)
        found = []
        for tenant, name, kind, raw, by_email, members in rows:
            when = as_datetime(raw)
            assert when is not None
            until = when + timedelta(days=GRACE_DAYS)
            found.append({"id": str(tenant), "name": name, "type": kind,
                          "deletedAt": when.isoformat(), "deletedBy": by_email,
                          "members": int(members), "restoreBefore": until.isoformat(),
                          "restorable": until > datetime.now(UTC)})
        return found
