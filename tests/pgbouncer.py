"""A real PgBouncer (Debian's package) of the test's own, on a free loopback port in front of
the test PostgreSQL, in transaction or session mode: the pooler a new user puts between the
app and the database (Supabase's port 6543 is one in transaction mode)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from tests.support import end_process, free_port, port_open, wait_until

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
# PgBouncer refuses to run as root; as root (CI containers) it drops to this user.
RUN_AS = "postgres"


class PgBouncer:
    def __init__(self, upstream_url: str, mode: str, pool_size: int = 20) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.user = parts.username or "postgres"
        self.database = parts.path.lstrip("/")
        self.mode = mode
        self.pool_size = pool_size
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="regcopilot-pgbouncer-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/pgbouncer"

    def start(self) -> PgBouncer:
        host, port = self.upstream
        (self.dir / "users.txt").write_text(f'"{self.user}" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'users.txt'}\n"
            f"pool_mode = {self.mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 500\n"
            f"admin_users = {self.user}\n"
            # asyncpg sends none of these, psql and others may.
            "ignore_startup_parameters = extra_float_digits,options,statement_timeout\n"
        )
        self.dir.chmod(0o755)
        for f in self.dir.iterdir():
            f.chmod(0o644)
        args = [PGBOUNCER, str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            args[1:1] = ["-u", RUN_AS]
        log = (self.dir / "pgbouncer.log").open("wb")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self._listening, timeout=10, what="pgbouncer listening")
        return self

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"pgbouncer exited: {self.log()}")
        return port_open(self.port)

    def log(self) -> str:
        return (self.dir / "pgbouncer.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """By its own PID (SIGTERM: immediate shutdown), then its directory."""
        end_process(self.proc, grace=10)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)


# How an instance reaches the database in the pooler tests, and the feed mode it must choose.
ROUTES = {
    "direct": (None, False, "listen"),
    "transaction": ("transaction", False, "poll"),
    "transaction+direct": ("transaction", True, "listen-direct"),
    "session": ("session", False, "listen"),
}


def route_settings(route: str, pg_url: str, bouncer: PgBouncer | None) -> dict[str, object]:
    """Settings overrides for an instance on this route (DATABASE_URL through the bouncer, the
    statement cache off as a transaction pooler requires, the direct URL where asked)."""
    mode, direct, _ = ROUTES[route]
    if mode is None:
        return {}
    assert bouncer is not None and bouncer.mode == mode
    out: dict[str, object] = {"DATABASE_URL": bouncer.url, "DATABASE_STATEMENT_CACHE_SIZE": 0}
    if direct:
        out["DATABASE_DIRECT_URL"] = pg_url
    return out
