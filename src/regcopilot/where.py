"""Which directory, cache and change feed a process uses, in words an operator can check:
the start log's one line and the CLI's `directory:` notice. Never a password."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from regcopilot.config import Settings

SQLITE = "sqlite:///"
# The directory the README's `./dev serve` uses (config.py's default), as the CLI resolves it.
DEFAULT_DATABASE_URL = Settings.model_fields["DATABASE_URL"].default


def directory(url: str) -> str:
    """`SQLite /abs/users.db` or `PostgreSQL host:port/database` (user, no password)."""
    if url.startswith(SQLITE):
        return f"SQLite {Path(url.removeprefix(SQLITE)).resolve()}"
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return f"PostgreSQL {user}{parts.hostname or 'localhost'}{port}{parts.path or '/'}"


def cache(settings: Settings) -> str:
    """`in-memory` or `Redis host:port`."""
    if not settings.REDIS_URL:
        return "in-memory (REDIS_URL not set)"
    # Sentinel and Cluster URLs list several hosts (`h1:26379,h2:26379`): cut at the
    # credentials and the path by hand, as urlsplit cannot read such a port.
    scheme, _, rest = settings.REDIS_URL.partition("://")
    place = rest.rpartition("@")[2].split("?", 1)[0]
    hosts = place if scheme == "unix" else place.split("/", 1)[0]  # a socket is a path
    return f"Redis {scheme}://{hosts or '?'}"


# How each directory kind (UserDirectory.kind) hears of changes to users and sessions.
FEEDS = {"sqlite": "change log polled", "postgres": "LISTEN/NOTIFY on the change log"}


def feed(kind: str, events: bool) -> str:
    how = FEEDS.get(kind, kind)
    return f"{how} + Redis pub/sub" if events else how


def start_line(settings: Settings, kind: str) -> str:
    """The one start-up line: directory, cache and change feed."""
    return (f"Directory {directory(settings.DATABASE_URL)} · cache {cache(settings)} · "
            f"feed {feed(kind, bool(settings.REDIS_URL))}")


def worth_saying(url: str) -> bool:
    """Whether a command should name its directory: it is not the file the README's server
    uses (run from the same directory), or that file does not exist yet (the command would
    make a new, empty one: likely the wrong working directory)."""
    if directory(url) != directory(DEFAULT_DATABASE_URL):
        return True
    return not Path(url.removeprefix(SQLITE)).exists()
