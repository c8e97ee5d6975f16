"""Which session store a directory gets: picked once it is open and its schema known."""

from __future__ import annotations

from regcopilot.names import AuthSchema
from regcopilot.users.directory import UserDirectory
from regcopilot.users.gotrue_sessions import GoTrueSessionRecords
from regcopilot.users.sessions import (
    PostgresSessionRecords,
    SessionRecords,
    SqliteSessionRecords,
)


def session_records(directory: UserDirectory) -> SessionRecords:
    """The store for this directory's schema: auth.sessions on Supabase Auth's, our own
    table otherwise. Call once the directory is open (before, the schema is not known)."""
    if directory.kind == "sqlite":
        return SqliteSessionRecords(directory)
    if directory.schema is AuthSchema.GOTRUE:
        return GoTrueSessionRecords(directory)
    return PostgresSessionRecords(directory)
