"""The two workspace writes a session can need, made by `authenticate` after validation
answered (validation itself only reads):

- `provision`: a session whose user never had a workspace recorded (minted before workspaces
  existed, or by another sign-in front end such as the Node tier's NextAuth) gets the personal
  workspace a sign-in would have given;
- `record`: the session was served in another workspace than the one recorded as current
  (access to it was lost, or none was recorded): the served one is recorded.

Both are rare, and both are tried once per user and situation in this process for a while: a
cached answer keeps saying "moved" until it is reloaded (the write is quiet, so nothing drops
it), and a client that ignores the re-issued cookie must not cost a write per request.
"""

from __future__ import annotations

import asyncio
import logging

from regcopilot.cache.entry import CacheEntry
from regcopilot.cache.memory import MemoryStore
from regcopilot.metrics.auth_metrics import AuthMetrics
from regcopilot.names import Count
from regcopilot.users.directory import Accounts, CurrentWorkspace, DirectoryUnavailable, User
from regcopilot.workspaces.store import WorkspaceStore

log = logging.getLogger("regcopilot.auth")

TRIED_MAX = 10_000
# How long an attempt is not repeated here: one that could not be made, or left the user
# without a workspace, is tried again after RETRY_SECONDS; a recorded workspace is not
# written again for DONE_SECONDS (the answer saying "moved" may stay cached that long).
RETRY_SECONDS = 5.0
DONE_SECONDS = 3600.0

Provisioned = tuple[User, CurrentWorkspace]


class SessionWorkspace:
    def __init__(
        self, accounts: Accounts, workspaces: WorkspaceStore, metrics: AuthMetrics
    ) -> None:
        self.accounts = accounts
        self.workspaces = workspaces
        self.metrics = metrics
        self._tried = MemoryStore(TRIED_MAX)
        self._running: dict[str, asyncio.Future[Provisioned | None]] = {}

    async def provision(self, user_id: str) -> Provisioned | None:
        """The user's personal workspace, made if they never had one. The account and its
        workspace read afterwards when the user has one now (made here, or by another instance
        meanwhile): the cached refusal is stale. None otherwise. DirectoryUnavailable
        propagates."""
        key = "provision:" + user_id
        if self._tried.get_now(key) is not None:
            return None
        running = self._running.get(user_id)
        if running is not None:  # parallel first requests: one provisioning
            return await asyncio.shield(running)
        future: asyncio.Future[Provisioned | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._running[user_id] = future
        try:
            made = await self._provision(user_id)
        except BaseException as exc:
            # Not remembered: the next request tries again (this one answers 503, and a
            # refusal in the meantime would clear the cookie of someone who is signed in).
            future.set_exception(exc)
            future.exception()  # retrieved: no warning when nobody else waited
            raise
        else:
            self._tried.set_now(key, True, RETRY_SECONDS)
            future.set_result(made)
            return made
        finally:
            del self._running[user_id]

    async def _provision(self, user_id: str) -> Provisioned | None:
        user = await self.accounts.get(user_id)
        if user is None or user.deleted_at is not None:
            return None
        # A user whose workspaces were all taken away gets none back (ensure_personal).
        if (await self.workspaces.ensure_personal(user)).tenant_id is None:
            return None
        # The answer from the statement validation reads: it carries what `get` does not
        # (the time of a password change, before which every session is void).
        return await self.accounts.get_with_workspace(user_id)

    async def record(self, user_id: str, entry: CacheEntry) -> None:
        """Record the workspace `entry` serves as the user's current one, if the directory
        still holds what the entry says it held. Failures are logged: the answer is right
        either way, and the next attempt writes it."""
        served, stored = entry.tenant_id, entry.stored_tenant_id
        if served is None:
            return
        key = f"record:{user_id}:{stored}:{served}"
        if self._tried.get_now(key) is not None:
            return
        self._tried.set_now(key, True, RETRY_SECONDS)
        try:
            written = await self.workspaces.record_current(user_id, served, stored)
        except (DirectoryUnavailable, ValueError) as exc:
            log.warning("Could not store the new current workspace of %s: %s", user_id, exc)
            return
        # Written, or the row holds something else now (a switch, whose notice reloads).
        self._tried.set_now(key, True, DONE_SECONDS)
        if written and stored is not None:  # counted once, by the instance that wrote it
            self.metrics.workspace(Count.WORKSPACE_ACCESS_LOST)
            self.metrics.workspace(Count.WORKSPACE_AUTO_SWITCHES)
