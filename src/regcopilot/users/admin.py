"""Admin actions on users, shared by the HTTP API and the CLI so both behave the same:
change the directory, then drop the user's cached validation everywhere at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from regcopilot.names import Revocation
from regcopilot.users.directory import FOREVER, AccountAdmin, is_uuid

Invalidate = Callable[[str], Awaitable[None]]
# Revoke every session of a user, with the reason recorded (auth/sessions.py); returns how many.
RevokeSessions = Callable[[str, str], Awaitable[int]]


class UnknownUser(LookupError):
    pass


def ban_end(until: datetime | None, seconds: int | None) -> datetime:
    if until is not None and seconds is not None:
        raise ValueError("give either an end time or a duration, not both")
    if seconds is not None:
        if seconds <= 0:
            raise ValueError("duration must be positive")
        try:
            return min(datetime.now(UTC) + timedelta(seconds=seconds), FOREVER)
        except OverflowError:  # past year 9999: as long as a ban without an end
            return FOREVER
    if until is not None:
        until = until if until.tzinfo else until.replace(tzinfo=UTC)
        if until <= datetime.now(UTC):
            raise ValueError("ban end must be in the future")
        return until
    return FOREVER


class UserAdmin:
    def __init__(
        self,
        directory: AccountAdmin,
        invalidate: Invalidate | None = None,
        revoke_sessions: RevokeSessions | None = None,
    ) -> None:
        self.directory = directory
        self._invalidate = invalidate
        self._revoke_sessions = revoke_sessions

    async def _end_sessions(self, user_id: str, reason: str) -> None:
        # A ban or delete ends the sessions for good: lifting the ban later does not bring
        # the old cookies back, the user signs in again.
        if self._revoke_sessions is not None:
            await self._revoke_sessions(user_id, reason)

    async def _after(self, user_id: str, changed: bool) -> None:
        if not changed:
            raise UnknownUser(user_id)
        # The directory's trigger tells every instance; dropping our own copy now makes the
        # very next request here a refusal without waiting for the feed.
        if self._invalidate is not None:
            await self._invalidate(user_id)

    async def ban(self, user_id: str, until: datetime | None = None, seconds: int | None = None
                  ) -> datetime:
        end = ban_end(until, seconds)
        await self._after(user_id, await self.directory.set_banned_until(_check(user_id), end))
        await self._end_sessions(user_id, Revocation.BAN)
        return end

    async def unban(self, user_id: str) -> None:
        await self._after(user_id, await self.directory.set_banned_until(_check(user_id), None))

    async def delete(self, user_id: str, *, soft: bool = False) -> None:
        await self._after(user_id, await self.directory.delete(_check(user_id), soft=soft))
        await self._end_sessions(user_id, Revocation.DELETE)

    async def invalidate(self, user_id: str) -> None:
        await self.directory.announce(_check(user_id))
        if self._invalidate is not None:
            await self._invalidate(user_id)


def _check(user_id: str) -> str:
    if not is_uuid(user_id):
        raise UnknownUser(user_id)
    return user_id
