"""The UserDirectory protocol, its records, and the rule that makes a user valid.

Both backends (SQLite, PostgreSQL) return rows as `User`; deciding validity happens here once,
so the two can never disagree about what "banned" means.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from regcopilot.names import Reason
from regcopilot.users.changes import Change, FeedCursor
from regcopilot.users.schema import SESSION_EVENT

FOREVER = datetime(9999, 12, 31, tzinfo=UTC)
# The change log is kept at least this long (the app passes its longest cache age + margin).
DEFAULT_LOG_KEEP_SECONDS = 7 * 3600.0
# Rows removed per pruning pass: bounded work, however far behind pruning is.
PRUNE_BATCH = 1000


class DirectoryUnavailable(Exception):
    """The directory could not answer (down, timeout). Never an invalid user, never cached."""


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    password_hash: str | None
    app_meta: dict
    user_meta: dict
    banned_until: datetime | None
    deleted_at: datetime | None
    last_sign_in_at: datetime | None
    created_at: datetime | None

    @property
    def role(self) -> str | None:
        role = self.app_meta.get("role")
        return role if isinstance(role, str) else None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def tenant_id(self, default: str) -> str:
        tenant = self.app_meta.get("tenant_id")
        return tenant if isinstance(tenant, str) and tenant else default

    @property
    def full_name(self) -> str | None:
        name = self.user_meta.get("full_name")
        return name if isinstance(name, str) else None


@dataclass(frozen=True, slots=True)
class CurrentWorkspace:
    """The workspace a session is in, from the same directory query as the account:
    tenant_id None when the user has no active workspace; stored_id is what
    user_tenant_contexts held (differs from tenant_id when access to it was lost)."""

    tenant_id: str | None = None
    name: str | None = None
    role: str | None = None
    stored_id: str | None = None

    @property
    def moved(self) -> bool:
        """The stored current workspace is not the one the session is in."""
        return self.stored_id != self.tenant_id

    @property
    def lost(self) -> bool:
        """A workspace that was current is no longer accessible."""
        return self.stored_id is not None and self.stored_id != self.tenant_id


NO_WORKSPACE = CurrentWorkspace()


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the directory says about a user: valid, or invalid with a reason."""

    valid: bool
    reason: Reason | None = None
    tenant_id: str | None = None
    role: str | None = None
    banned_until: datetime | None = None
    tenant_role: str | None = None
    tenant_name: str | None = None


def judge(
    user: User | None,
    default_tenant: str,
    now: datetime | None = None,
    workspace: CurrentWorkspace | None = None,
) -> Verdict:
    """The account's verdict; with `workspace` (a session being validated), a valid account
    with no active workspace left is refused too, and the tenant is that workspace."""
    if user is None:
        return Verdict(False, Reason.NOT_FOUND)
    tenant = user.tenant_id(default_tenant)
    if user.deleted_at is not None:
        return Verdict(False, Reason.DELETED, tenant)
    now = now or datetime.now(UTC)
    if user.banned_until is not None and user.banned_until > now:
        return Verdict(False, Reason.BANNED, tenant, user.role, user.banned_until)
    if workspace is None:
        return Verdict(True, None, tenant, user.role)
    if workspace.tenant_id is None:
        return Verdict(False, Reason.NO_WORKSPACE, None, user.role)
    return Verdict(
        True, None, workspace.tenant_id, user.role,
        tenant_role=workspace.role, tenant_name=workspace.name,
    )


ChangeCallback = Callable[[Change], Awaitable[None] | None]
StateCallback = Callable[[bool], None]
# A session revoked by anyone (this app, the CLI, plain SQL): its id and expiry (Unix s).
RevokedCallback = Callable[[str, int], Awaitable[None] | None]


def dispatch(
    change: Change, on_change: ChangeCallback, on_revoked: RevokedCallback | None
) -> Awaitable[None] | None:
    """One change log, two kinds of event: a user changed, or a session was revoked."""
    if not change.user_id.startswith(SESSION_EVENT):
        return on_change(change)
    if on_revoked is None:
        return None
    session_id, _, expiry = change.user_id.removeprefix(SESSION_EVENT).rpartition(":")
    try:
        expires = int(expiry)
    except ValueError:
        return None
    return on_revoked(session_id, expires) if session_id else None


@dataclass(frozen=True, slots=True)
class LogSnapshot:
    """What the change log holds when a process starts: `floor`, the sequence below which it
    has been pruned (nothing older can be proved); `head`, the newest sequence; `last`, each
    user's newest change in the log."""

    floor: int
    head: int
    last: dict[str, int]


class Accounts(Protocol):
    """Account reads, for sign-in and validation (judged by `judge` above), and the sign-in
    stamp."""

    async def get(self, user_id: str) -> User | None: ...
    async def get_with_workspace(self, user_id: str) -> tuple[User | None, CurrentWorkspace]:
        """The account and the session's current workspace in one statement (one round
        trip): what the validator asks."""
        ...
    async def find_by_email(self, email: str) -> User | None: ...
    async def record_sign_in(self, user_id: str) -> None: ...


class AccountAdmin(Protocol):
    """Admin reads and writes on accounts (users/admin.py, the console, the CLI)."""

    async def add(
        self,
        email: str,
        password_hash: str,
        *,
        admin: bool = False,
        tenant_id: str | None = None,
        full_name: str | None = None,
    ) -> User: ...
    async def list(self, limit: int = 100) -> list[User]: ...
    async def page(
        self, email_contains: str = "", offset: int = 0, limit: int = 50
    ) -> tuple[list[User], int]:
        """Users whose email contains the text, newest first, and how many match."""
        ...
    async def count(self) -> int: ...
    async def set_banned_until(self, user_id: str, until: datetime | None) -> bool: ...
    async def delete(self, user_id: str, *, soft: bool = False) -> bool: ...
    async def announce(self, user_id: str) -> None:
        """Tell every watcher this user changed (used when nothing in the row did)."""
        ...


class WorkspaceTables(Protocol):
    """The workspace tables, in the SQL of users/dialect.py ({p}, {tenants}, …), rendered by
    the backend (workspaces/store.py)."""

    kind: str

    async def rows(self, sql: str, *params: Any) -> list[tuple]:
        """A read."""
        ...
    async def batch(self, statements: list[tuple[str, tuple]]) -> list[int]:
        """Writes in one transaction; the row count of each."""
        ...
    async def find_by_email(self, email: str) -> User | None: ...


class ChangeFeed(Protocol):
    """The directory's change log: read once at start, then followed."""

    async def read_log(self) -> LogSnapshot:
        """The retained change log, read once at start (bounded by pruning)."""
        ...
    async def watch(
        self,
        cursor: FeedCursor,
        on_change: ChangeCallback,
        on_state: StateCallback,
        on_revoked: RevokedCallback | None = None,
    ) -> None:
        """Run until cancelled, calling on_change(change) for every change to a user's
        validity and on_revoked(session_id, expires) for every session revoked, made by anyone
        (this app, the CLI, plain SQL), in the log's order where it matters: after a reconnect
        or a gap the log is replayed from `cursor.position` before on_state(True).
        on_state(False) while changes may be missed."""
        ...


class UserDirectory(Accounts, AccountAdmin, WorkspaceTables, ChangeFeed, Protocol):
    """What a backend (SQLite, PostgreSQL) implements: every role above, and its life cycle.
    Callers take the narrowest role they use, and never learn which backend they hold."""

    kind: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...


def normalize_email(email: str) -> str:
    return email.strip().lower()


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True
