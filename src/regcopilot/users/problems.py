"""One line for the operator when the user directory at DATABASE_URL cannot be opened.

Shared by `regcopilot doctor` (its `database` check) and `regcopilot serve` (which checks the
directory before uvicorn starts, so a bad DATABASE_URL is one line and not a traceback through
uvicorn, FastAPI and asyncpg).
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from regcopilot.users.directory import DirectoryUnavailable
from regcopilot.users.recognise import SchemaMismatch


def mask(url: str) -> str:
    """The URL with its password replaced, for printing. Read from the text, not urlsplit's
    `.port`: that raises on several hosts (a primary and its standbys, Sentinels)."""
    parts = urlsplit(url)
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostlist}"))


def os_reason(exc: OSError) -> str:
    # asyncio's "Connect call failed (...)" hides the cause; the errno names it.
    if exc.errno == errno.ECONNREFUSED:
        return "connection refused (nothing listens there)"
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


def postgres_hosts(url: str) -> list[tuple[str, int]]:
    """Every `host:port` of a PostgreSQL URL, in order (libpq's multi-host form)."""
    found = []
    for item in urlsplit(url).netloc.rpartition("@")[2].split(","):
        host, sep, port = item.rpartition(":")
        if not sep or host.count("[") != host.count("]"):  # no port, or inside [IPv6]
            host, port = item, ""
        found.append((host.strip("[]") or "localhost", int(port) if port.isdigit() else 5432))
    return found


def postgres_where(url: str) -> str:
    hosts = ",".join(f"{host}:{port}" for host, port in postgres_hosts(url))
    return f"{hosts}/{urlsplit(url).path.lstrip('/')}"


def postgres_problem(url: str, exc: BaseException, timeout: float) -> str:
    """Why connecting to PostgreSQL failed, in the doctor's words."""
    import asyncpg

    parts = urlsplit(url)
    where = postgres_where(url)
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return (f"database {parts.path.lstrip('/')!r} does not exist on "
                f"{where.rpartition('/')[0]}")
    refused = (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)
    if isinstance(exc, refused):
        return f"authentication to {where} failed: {exc}"
    if isinstance(exc, TimeoutError):
        return f"cannot reach {where}: no answer within {timeout:g} s"
    if isinstance(exc, OSError):
        return f"cannot reach {where}: {os_reason(exc)}"
    return f"cannot connect to {where}: {exc}"


def sqlite_problem(url: str, exc: BaseException) -> str:
    where = Path(url.removeprefix("sqlite:///")).resolve()
    if where.is_dir():
        return f"cannot open {where}: it is a directory; name a file (sqlite:///path/users.db)"
    if isinstance(exc, OSError) and exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return f"cannot create {where}: {exc.filename or 'a parent'} is a file, not a directory"
    if isinstance(exc, OSError) and exc.errno:
        return f"cannot open {where}: {os.strerror(exc.errno)}"
    if isinstance(exc, sqlite3.Error | OSError):
        return f"cannot open {where}: {exc}"
    return f"cannot prepare {where}: {exc}"


def open_problem(url: str, exc: BaseException, timeout: float) -> str:
    """`DATABASE_URL=<url, password masked>: <why>` for a directory that would not open."""
    if isinstance(exc, DirectoryUnavailable) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, SchemaMismatch):
        return f"DATABASE_URL={mask(url)}: {exc}"
    why = (sqlite_problem(url, exc) if url.startswith("sqlite:")
           else postgres_problem(url, exc, timeout))
    return f"DATABASE_URL={mask(url)}: {why}"
