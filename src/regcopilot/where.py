"""Which directory, cache and change feed a process uses, in words an operator can check:
the start log's one line and the CLI's `directory:` notice. Never a password."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from regcopilot.config import Settings
from regcopilot.users.problems import postgres_where

SQLITE = "sqlite:///"
# The directory the README's `./dev serve` uses (config.py's default), as the CLI resolves it.
DEFAULT_DATABASE_URL = Settings.model_fields["DATABASE_URL"].default


def directory(url: str) -> str:
    """`SQLite /abs/users.db` or `PostgreSQL user@host:port/database` (no password; every host
    of libpq's multi-host form, `h1:p1,h2:p2`, as a primary and its standbys are named)."""
    if url.startswith(SQLITE):
        return f"SQLite {Path(url.removeprefix(SQLITE)).resolve()}"
    credentials, at, _ = urlsplit(url).netloc.rpartition("@")
    user = f"{credentials.partition(':')[0]}@" if at and credentials else ""
    return f"PostgreSQL {user}{postgres_where(url)}"


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
# PostgreSQL's is chosen at connect (users/pg_feed.py: LISTEN where a round trip proves it
# heard, else polling), and logged on the line after this one.
FEEDS = {"sqlite": "change log polled",
         "postgres": "LISTEN/NOTIFY on the change log (polled where a pooler drops it)"}


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
