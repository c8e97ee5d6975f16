"""What `regcopilot serve` checks before handing over to uvicorn, so the usual first-start
mistakes end in one line naming the setting instead of a traceback: the port is taken, the
user directory at DATABASE_URL cannot be opened. And the observability token it generates
once, so `monitor` on the same machine works against the server the README starts."""

from __future__ import annotations

import asyncio
import errno
import socket

from regcopilot.config import Settings
from regcopilot.factories import build_directory
from regcopilot.local_token import ensure_token, token_path
from regcopilot.users.problems import open_problem


def port_problem(host: str, port: int) -> str | None:
    """Bind as uvicorn will (SO_REUSEADDR, so a socket in TIME_WAIT is no obstacle)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            change = f"start on another port with --port {port + 1} or PORT={port + 1}"
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use (another server?): {change}"
            if exc.errno == errno.EACCES:
                return f"port {port} needs privileges on this machine: {change}"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"--host {host} is not an address of this machine"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


async def _open_directory(settings: Settings) -> None:
    directory = build_directory(settings, pool_size=1)
    try:
        await directory.open()  # what each worker does first; it also prepares the schema
    finally:
        await directory.close()


def database_problem(settings: Settings) -> str | None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_open_directory(settings))
    except Exception as exc:  # every way of failing gets the one line; none is expected
        # The loop is left open: after a failed connect aiosqlite's worker thread still
        # posts to it, and a closed loop turns that into a traceback. serve exits next.
        return open_problem(settings.DATABASE_URL, exc, settings.DATABASE_TIMEOUT_SECONDS)
    loop.close()
    return None


def observability_token(settings: Settings) -> str | None:
    """Without OBSERVABILITY_TOKEN, make sure the generated one exists; the sentence to print
    when it was generated just now (said once, like the generated secret)."""
    if settings.OBSERVABILITY_TOKEN:
        return None
    token, created = ensure_token(settings.DATA_DIR)
    settings.OBSERVABILITY_TOKEN = token
    if not created:
        return None
    return (f"OBSERVABILITY_TOKEN not set - generated one into {token_path(settings.DATA_DIR)} "
            "for /api/observability and /metrics; `regcopilot monitor` and `regcopilot cost "
            "--url` read it when run from this directory")
