"""The user directory: the source of truth every session is validated against."""

from regcopilot.users.directory import (
    DirectoryUnavailable,
    User,
    UserDirectory,
    Verdict,
    open_directory,
)

__all__ = ["DirectoryUnavailable", "User", "UserDirectory", "Verdict", "open_directory"]
