"""Supabase's audit log (auth.audit_log_entries) shows this tier's sign-ins and sign-outs,
in GoTrue's payload format, so its dashboard's "Auth logs" tell one story.

Off the request's critical path: a sign-in only appends to a bounded queue here; one
background task writes what has queued up in one statement, and keeps it (bounded) while the
database does not answer. On our own schema there is no such table: NoAuditTrail.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg

from regcopilot.background import stop
from regcopilot.names import AuthSchema
from regcopilot.users.auth_tables import ZERO_INSTANCE
from regcopilot.users.directory import DirectoryUnavailable, User, UserDirectory

log = logging.getLogger("regcopilot.users")

MAX_PENDING = 10_000  # past this the oldest entries are dropped (and counted), never memory
RETRY_SECONDS = 1.0
IP_MAX = 64  # auth.audit_log_entries.ip_address is varchar(64)
LOGIN, LOGOUT = "login", "logout"  # GoTrue's AuditAction values; both of log_type "account"


def payload(action: str, actor_id: str, email: str, name: str | None,
            traits: dict[str, Any] | None) -> dict[str, Any]:
    """GoTrue's NewAuditLogEntry payload for an email user (not SSO)."""
    body: dict[str, Any] = {
        "actor_id": actor_id,
        "actor_via_sso": False,
        "actor_username": email,
        "action": action,
        "log_type": "account",
    }
    if name is not None:
        body["actor_name"] = name
    if traits is not None:
        body["traits"] = traits
    return body


class AuditTrail(Protocol):
    def login(self, user: User, ip: str | None) -> None: ...
    def logout(self, user_id: str, email: str, name: str | None, ip: str | None) -> None: ...
    def start(self) -> None: ...
    async def close(self) -> None: ...


class NoAuditTrail:
    def login(self, user: User, ip: str | None) -> None:
        pass

    def logout(self, user_id: str, email: str, name: str | None, ip: str | None) -> None:
        pass

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


class GoTrueAuditTrail:
    def __init__(self, directory: Any) -> None:
        self.directory = directory  # a PostgresDirectory: its pool and timeouts
        self._pending: deque[tuple[str, str, datetime, str]] = deque(maxlen=MAX_PENDING)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0

    def _add(self, body: dict[str, Any], ip: str | None) -> None:
        if len(self._pending) == MAX_PENDING:
            self.dropped += 1
        self._pending.append((str(uuid.uuid4()), json.dumps(body), datetime.now(UTC),
                              (ip or "")[:IP_MAX]))
        self._wake.set()

    def login(self, user: User, ip: str | None) -> None:
        self._add(payload(LOGIN, user.id, user.email, user.full_name,
                          {"provider": "email"}), ip)

    def logout(self, user_id: str, email: str, name: str | None, ip: str | None) -> None:
        self._add(payload(LOGOUT, user_id, email, name, None), ip)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-log")

    async def close(self) -> None:
        await stop(self._task)
        try:
            await self.flush()
        except (DirectoryUnavailable, asyncpg.PostgresError) as exc:
            log.warning("%d audit log entr(ies) not written: %s", len(self._pending), exc)

    async def flush(self) -> int:
        """Write everything queued, in one statement; how many were written."""
        if not self._pending:
            return 0
        batch, self._pending = self._pending, deque(maxlen=MAX_PENDING)
        try:
            async with self.directory._conn() as conn:
                await conn.executemany(
                    "INSERT INTO auth.audit_log_entries (instance_id, id, payload, created_at,"
                    f" ip_address) VALUES ('{ZERO_INSTANCE}', $1, $2::json, $3, $4)"
                    # A write cut short (cancelled at shutdown) may have landed: retrying it
                    # must not fail on the rows it did write.
                    " ON CONFLICT (id) DO NOTHING",
                    batch,
                )
        except BaseException:
            self._pending.extendleft(reversed(batch))  # first in line again, still bounded
            raise
        self.written += len(batch)
        return len(batch)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except DirectoryUnavailable as exc:
                log.debug("Audit log deferred: %s", exc)
                await asyncio.sleep(RETRY_SECONDS)
                self._wake.set()
            except asyncpg.PostgresError as exc:
                # Refused, not unreachable (e.g. no INSERT grant on auth.audit_log_entries):
                # retrying would not help; the sign-ins themselves are unaffected.
                dropped, self._pending = len(self._pending), deque(maxlen=MAX_PENDING)
                self.dropped += dropped
                log.warning("Audit log: %d entr(ies) not written: %s", dropped, exc)


def audit_trail(directory: UserDirectory) -> AuditTrail:
    """Chosen once the directory is open (its schema known)."""
    if directory.schema is AuthSchema.GOTRUE:
        return GoTrueAuditTrail(directory)
    return NoAuditTrail()
