"""How an operator names a user: by id or by email, the same everywhere (the CLI's `users`,
`sessions` and `workspaces` commands all resolve through here)."""

from __future__ import annotations

from regcopilot.users.admin import UnknownUser
from regcopilot.users.directory import User, UserDirectory, is_uuid

LIST_USERS = "regcopilot users list"


async def find_user(directory: UserDirectory, who: str) -> User:
    """The user with this id or email; UnknownUser when there is none."""
    who = who.strip()
    user = None
    if "@" in who:
        user = await directory.find_by_email(who)
    elif is_uuid(who):
        user = await directory.get(who)
    if user is None:
        raise UnknownUser(who)
    return user


def unknown(who: object) -> str:
    """The one message for a user that is not there, saying how to see who is."""
    return f"no user with id or email {who} (`{LIST_USERS}` shows them)"
