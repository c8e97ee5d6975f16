"""Workspace reads and writes, shared by the HTTP API, the sign-in and the CLI so all three
behave the same. Every write lands in tables whose triggers announce the affected users on the
change feed; `invalidate` also drops this process's copy at once, so the very next request
here sees the change without waiting for the feed."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from regcopilot.users.dialect import ACTIVE, render
from regcopilot.users.directory import CurrentWorkspace, User, WorkspaceTables, is_uuid
from regcopilot.users.workspace_schema import QUIET_SETTING, ROLES, STATUSES

Invalidate = Callable[[str], Awaitable[None]]
# A switch asked for: the row is written only while the membership is active (the same
# statement, so a removal racing the switch cannot leave a current workspace without access).
SWITCH = (
    "INSERT INTO {target} (user_id, current_tenant_id, updated_at)"
    " SELECT CAST({p} AS {uuid}), CAST({p} AS {uuid}), {now}"
    " WHERE EXISTS (SELECT 1 FROM {members} m JOIN {tenants} t ON t.id = m.tenant_id"
    f" WHERE m.user_id = {{p}} AND m.tenant_id = {{p}} AND {ACTIVE})"
    " ON CONFLICT (user_id) DO UPDATE SET current_tenant_id = excluded.current_tenant_id,"
    " updated_at = excluded.updated_at"
)
MANAGERS = ("owner", "admin")
MAX_NAME = 200


class NotFound(LookupError):
    """No such workspace, user or membership (HTTP 404)."""


@dataclass(frozen=True, slots=True)
class Workspace:
    id: str
    name: str
    slug: str | None
    type: str
    role: str | None = None

    def public(self, current: str | None = None) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "slug": self.slug, "type": self.type,
                "role": self.role, "isCurrent": self.id == current}


def slug_for(name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "workspace"
    return f"{base}-{secrets.token_hex(3)}"


def _ws(row: tuple) -> Workspace:
    return Workspace(str(row[0]), row[1], row[2], row[3], row[4] if len(row) > 4 else None)


class WorkspaceStore:
    def __init__(self, directory: WorkspaceTables, invalidate: Invalidate | None = None) -> None:
        self.directory = directory
        self._invalidate = invalidate

    def _sql(self, template: str) -> str:
        return render(self.directory.kind, template)

    async def _rows(self, template: str, *params: Any) -> list[tuple]:
        return await self.directory.rows(self._sql(template), *params)

    async def _touched(self, *user_ids: str) -> None:
        if self._invalidate is not None:
            for user_id in user_ids:
                await self._invalidate(user_id)

    # --- reads ----------------------------------------------------------------------
    async def list_for(self, user_id: str) -> list[Workspace]:
        """The workspaces a user can be in now (active membership, workspace not deleted)."""
        if not is_uuid(user_id):
            return []
        rows = await self._rows(
            "SELECT t.id, t.name, t.slug, t.type, m.role FROM {members} m"
            " JOIN {tenants} t ON t.id = m.tenant_id"
            f" WHERE m.user_id = {{p}} AND {ACTIVE} ORDER BY t.type = 'personal' DESC, t.name",
            user_id,
        )
        return [_ws(r) for r in rows]

    async def get(self, tenant_id: str) -> tuple[Workspace, str] | None:
        """A workspace that is not deleted, and its owner's id."""
        if not is_uuid(tenant_id):
            return None
        rows = await self._rows(
            "SELECT id, name, slug, type, NULL, owner_id FROM {tenants}"
            " WHERE id = {p} AND deleted_at IS NULL",
            tenant_id,
        )
        return (_ws(rows[0]), str(rows[0][5])) if rows else None

    async def role_of(self, user_id: str, tenant_id: str) -> str | None:
        """The user's role in the workspace while the membership is active, else None."""
        if not (is_uuid(user_id) and is_uuid(tenant_id)):
            return None
        rows = await self._rows(
            "SELECT m.role FROM {members} m JOIN {tenants} t ON t.id = m.tenant_id"
            f" WHERE m.user_id = {{p}} AND m.tenant_id = {{p}} AND {ACTIVE}",
            user_id, tenant_id,
        )
        return rows[0][0] if rows else None

    async def members(self, tenant_id: str) -> list[dict[str, Any]]:
        rows = await self._rows(
            "SELECT m.user_id, u.email, m.role, m.status, m.joined_at FROM {members} m"
            " JOIN {users} u ON u.id = m.user_id"
            " WHERE m.tenant_id = {p} AND m.deleted_at IS NULL ORDER BY m.joined_at, u.email",
            tenant_id,
        )
        return [{"userId": str(r[0]), "email": r[1], "role": r[2], "status": r[3],
                 "joinedAt": str(r[4]) if r[4] is not None else None} for r in rows]

    async def current(self, user_id: str) -> CurrentWorkspace:
        _user, workspace = await self.directory.get_with_workspace(user_id)
        return workspace

    # --- writes ---------------------------------------------------------------------
    def _new_tenant(self, tenant_id: str, name: str, slug: str, kind: str, owner: str,
                    ) -> list[tuple[str, tuple]]:
        return [
            (self._sql("INSERT INTO {tenants} (id, name, slug, type, owner_id)"
                       " VALUES ({p}, {p}, {p}, {p}, {p})"),
             (_param(self, tenant_id), name, slug, kind, _param(self, owner))),
            (self._sql("INSERT INTO {members} (id, tenant_id, user_id, role, status, joined_at)"
                       " VALUES ({p}, {p}, {p}, 'owner', 'active', {now})"),
             (_param(self, str(uuid.uuid4())), _param(self, tenant_id), _param(self, owner))),
        ]

    def _set_current(self, user_id: str, tenant_id: str) -> list[tuple[str, tuple]]:
        """Both records of the current workspace, as the upstream's switch_tenant writes them:
        user_tenant_contexts (what sessions follow) and user_preferences.current_tenant_id
        (what the upstream's admin app reads as the user's primary workspace)."""
        params = (_param(self, user_id), _param(self, tenant_id))
        return [(self._sql(f"INSERT INTO {{{table}}} (user_id, current_tenant_id, updated_at)"
                           " VALUES ({p}, {p}, {now}) ON CONFLICT (user_id) DO UPDATE SET"
                           " current_tenant_id = excluded.current_tenant_id,"
                           " updated_at = excluded.updated_at"), params)
                for table in ("contexts", "preferences")]

    async def ensure_personal(self, user: User) -> CurrentWorkspace:
        """At sign-in: a user who never had a personal workspace and has no active one gets
        one, made current. A user whose workspaces were all taken away gets none back."""
        workspace = await self.current(user.id)
        if workspace.tenant_id is not None:
            if workspace.moved:  # the stored one is gone: this sign-in switches, record it
                await self.set_current(user.id, workspace.tenant_id)
            return workspace
        owned = await self._rows(
            "SELECT 1 FROM {tenants} WHERE owner_id = {p} AND type = 'personal'", user.id
        )
        if owned:
            return workspace
        local = user.email.split("@", 1)[0] or "user"
        # Quietly: the user had no workspace, so no instance holds a valid answer for them to
        # drop (a cached refusal is dropped by the sign-in); announcing it made the first
        # request's cached answer vanish a moment later, costing a second directory query.
        await self.directory.batch(self._quietly(
            user.id, self._new_personal(user.id, slug_for(f"personal-{local}"))
        ))
        await self._touched(user.id)
        return await self.current(user.id)

    def _new_personal(self, user_id: str, slug: str) -> list[tuple[str, tuple]]:
        """The personal workspace, its owner's membership and the current-workspace record,
        each only if the user owned no personal workspace when the transaction looked (in the
        statement itself; on PostgreSQL behind a per-user transaction lock, SQLite serialises
        writers): two instances giving the same user one at once make one."""
        tid = str(uuid.uuid4())
        uid, new = _param(self, user_id), _param(self, tid)
        made = " WHERE EXISTS (SELECT 1 FROM {tenants} WHERE id = CAST({p} AS {uuid}))"
        statements = [] if self.directory.kind != "postgres" else [
            ("SELECT pg_advisory_xact_lock(hashtext($1))", (f"personal:{user_id}",))
        ]
        return [*statements, (
            self._sql("INSERT INTO {tenants} (id, name, slug, type, owner_id)"
                      " SELECT CAST({p} AS {uuid}), {p}, {p}, 'personal', CAST({p} AS {uuid})"
                      " WHERE NOT EXISTS (SELECT 1 FROM {tenants}"
                      " WHERE owner_id = CAST({p} AS {uuid}) AND type = 'personal')"),
            (new, "Personal Workspace", slug, uid, uid),
        ), (
            self._sql("INSERT INTO {members} (id, tenant_id, user_id, role, status, joined_at)"
                      " SELECT CAST({p} AS {uuid}), CAST({p} AS {uuid}), CAST({p} AS {uuid}),"
                      " 'owner', 'active', {now}" + made),
            (_param(self, str(uuid.uuid4())), new, uid, new),
        ), *[(  # both records of the current workspace, as _set_current writes them
            self._sql(f"INSERT INTO {{{table}}} (user_id, current_tenant_id, updated_at)"
                      " SELECT CAST({p} AS {uuid}), CAST({p} AS {uuid}), {now}" + made
                      + " ON CONFLICT (user_id) DO UPDATE SET"
                      " current_tenant_id = excluded.current_tenant_id,"
                      " updated_at = excluded.updated_at"),
            (uid, new, new),
        ) for table in ("contexts", "preferences")]]

    async def create_team(self, owner_id: str, name: str) -> Workspace:
        name = name.strip()
        if not name or len(name) > MAX_NAME:
            raise ValueError(f"name must be 1 to {MAX_NAME} characters")
        tenant_id = str(uuid.uuid4())
        slug = slug_for(name)
        await self.directory.batch(self._new_tenant(tenant_id, name, slug, "team", owner_id))
        await self._touched(owner_id)
        return Workspace(tenant_id, name, slug, "team", "owner")

    async def switch(self, user_id: str, tenant_id: str) -> bool:
        """Make a workspace current, only while the user is an active member of it."""
        if not (is_uuid(user_id) and is_uuid(tenant_id)):
            return False
        uid, tid = _param(self, user_id), _param(self, tenant_id)
        (count, _) = await self.directory.batch(
            [(self._sql(SWITCH.replace("{target}", table)), (uid, tid, uid, tid))
             for table in ("{contexts}", "{preferences}")])
        if count:
            await self._touched(user_id)
        return count > 0

    async def record_current(self, user_id: str, tenant_id: str, stored: str | None) -> bool:
        """After a validation served `tenant_id` while the row held `stored` (access to it was
        lost, or nothing was recorded): record the served one — only if the row still holds
        `stored`, so a switch made meanwhile is never overwritten. True if it was written.

        No membership check (the directory just chose this one), and no change notice: the
        row now says what every instance computes anyway from the membership tables, whose own
        change was announced. (Measured: announcing it made every instance drop the answer
        its lock holder had just cached, and the waiters on that lock sat out their full
        0.5 s: access-lost → effect p50 516 ms instead of ms.)"""
        uid, tid = _param(self, user_id), _param(self, tenant_id)
        if stored is None:
            write = (self._sql(
                "INSERT INTO {contexts} (user_id, current_tenant_id, updated_at)"
                " VALUES ({p}, {p}, {now}) ON CONFLICT (user_id) DO UPDATE SET"
                " current_tenant_id = excluded.current_tenant_id,"
                " updated_at = excluded.updated_at"
                " WHERE {contexts}.current_tenant_id IS NULL"), (uid, tid))
        else:
            write = (self._sql(
                "UPDATE {contexts} SET current_tenant_id = {p}, updated_at = {now}"
                " WHERE user_id = {p} AND current_tenant_id = {p}"),
                (tid, uid, _param(self, stored)))
        # user_preferences in step (the upstream's switch_tenant writes both), whenever the
        # contexts row now holds the served workspace.
        preferences = (self._sql(
            "INSERT INTO {preferences} (user_id, current_tenant_id, updated_at)"
            " SELECT CAST({p} AS {uuid}), CAST({p} AS {uuid}), {now}"
            " WHERE EXISTS (SELECT 1 FROM {contexts} WHERE user_id = CAST({p} AS {uuid})"
            " AND current_tenant_id = CAST({p} AS {uuid}))"
            " ON CONFLICT (user_id) DO UPDATE SET current_tenant_id = excluded.current_tenant_id,"
            " updated_at = excluded.updated_at"), (uid, tid, uid, tid))
        counts = await self.directory.batch(self._quietly(user_id, [write, preferences]))
        return counts[1] > 0  # after _quietly's one leading statement

    async def set_current(self, user_id: str, tenant_id: str) -> None:
        """A sign-in's switch away from a lost workspace (ensure_personal): no membership
        check (the directory just chose this one), and no change notice, as record_current."""
        await self.directory.batch(self._quietly(user_id, self._set_current(user_id, tenant_id)))

    def _quietly(self, user_id: str, writes: list[tuple[str, tuple]]) -> list[tuple[str, tuple]]:
        """`writes` in one transaction whose workspace-table triggers announce nothing. Only
        for writes no cached answer can depend on (see record_current, ensure_personal)."""
        if self.directory.kind == "postgres":
            return [(f"SELECT set_config('{QUIET_SETTING}', 'on', true)", ()), *writes]
        # SQLite: a marker row, then the writes, then every log row from the marker on for
        # this user is taken back before the commit (writers are serialised: nobody else's
        # rows are in between, and no poller sees uncommitted rows).
        marker = f"quiet:{uuid.uuid4()}"
        return [
            ("INSERT INTO auth_user_changes (user_id) VALUES (?)", (marker,)),
            *writes,
            ("DELETE FROM auth_user_changes WHERE seq >= (SELECT seq FROM auth_user_changes"
             " WHERE user_id = ?) AND user_id IN (?, ?)", (marker, marker, user_id)),
        ]

    async def add_member(self, tenant_id: str, email: str, role: str,
                         invited_by: str | None = None) -> dict[str, Any]:
        _check_role(role)
        user = await self.directory.find_by_email(email)
        if user is None or user.deleted_at is not None:
            raise NotFound("no user with that email")
        sql = self._sql(
            "INSERT INTO {members} (id, tenant_id, user_id, role, status, invited_by, joined_at)"
            " VALUES ({p}, {p}, {p}, {p}, 'active', {p}, {now})"
            " ON CONFLICT (tenant_id, user_id) DO UPDATE"
            " SET role = excluded.role, status = 'active', deleted_at = NULL,"
            " joined_at = excluded.joined_at, updated_at = {now}"
        )
        await self.directory.batch([(sql, (
            _param(self, str(uuid.uuid4())), _param(self, tenant_id), _param(self, user.id),
            role, _param(self, invited_by) if invited_by else None,
        ))])
        await self._touched(user.id)
        return {"userId": user.id, "email": user.email, "role": role, "status": "active"}

    async def update_member(self, tenant_id: str, user_id: str, *, role: str | None = None,
                            status: str | None = None) -> bool:
        if role is None and status is None:
            raise ValueError("give a role or a status")
        if role is not None:
            _check_role(role)
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        if not is_uuid(user_id):
            return False
        sets, params = [], []
        if role is not None:
            sets.append("role = {p}")
            params.append(role)
        if status is not None:
            sets.append("status = {p}")
            params.append(status)
        sql = self._sql(f"UPDATE {{members}} SET {', '.join(sets)}, updated_at = {{now}}"
                        " WHERE tenant_id = {p} AND user_id = {p} AND deleted_at IS NULL")
        (count,) = await self.directory.batch(
            [(sql, (*params, _param(self, tenant_id), _param(self, user_id)))]
        )
        if count:
            await self._touched(user_id)
        return count > 0

    async def remove_member(self, tenant_id: str, user_id: str) -> bool:
        """A soft removal, as the upstream does (its rows are kept for the audit trail)."""
        if not is_uuid(user_id):
            return False
        sql = self._sql("UPDATE {members} SET status = 'removed', deleted_at = {now},"
                        " updated_at = {now} WHERE tenant_id = {p} AND user_id = {p}"
                        " AND deleted_at IS NULL")
        (count,) = await self.directory.batch(
            [(sql, (_param(self, tenant_id), _param(self, user_id)))]
        )
        if count:
            await self._touched(user_id)
        return count > 0

    async def can_manage(self, user_id: str, tenant_id: str, *, platform_admin: bool) -> bool:
        return platform_admin or await self.role_of(user_id, tenant_id) in MANAGERS


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")


def _param(store: WorkspaceStore, value: str) -> Any:
    """asyncpg wants uuid.UUID for uuid columns in VALUES lists; SQLite stores text."""
    return uuid.UUID(value) if store.directory.kind == "postgres" else value


def _time(store: WorkspaceStore, value: datetime) -> Any:
    """A timestamptz for asyncpg; on SQLite the text `{now}` writes, so the two compare."""
    if store.directory.kind == "postgres":
        return value
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
