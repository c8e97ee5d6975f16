"""Three `regcopilot serve` processes on loopback, on a PostgreSQL database and a Redis key prefix
of the run's own, removed afterwards: what the lockout and workspace benches measure across."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx

from tests.cluster import ServerProcess, cluster_env, reset_users
from tests.pgbouncer import PgBouncer
from tests.support import delete_prefix

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.asynccontextmanager
async def three_instances(name: str, pooler: str | None = None
                          ) -> AsyncIterator[tuple[str, list[httpx.AsyncClient]]]:
    """(database URL, a client per instance). `pooler` ("transaction" or "session"): the
    instances' DATABASE_URL goes through a PgBouncer of the run's own in that mode; the URL
    returned stays the database's own (plain SQL, as an operator would)."""
    db = f"regcopilot_{name}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{db}"')
    pg_url = f"postgresql://postgres@127.0.0.1:5432/{db}"
    prefix = f"regcopilot-{name}-{uuid.uuid4().hex[:8]}:copilot:auth:"
    tmp = Path(tempfile.mkdtemp(prefix=f"regcopilot-{name}-"))
    servers: list[ServerProcess] = []
    clients: list[httpx.AsyncClient] = []
    bouncer = PgBouncer(pg_url, pooler).start() if pooler else None
    try:
        await reset_users(pg_url)
        env = cluster_env(bouncer.url if bouncer else pg_url, prefix, tmp)
        if bouncer:
            env["DATABASE_STATEMENT_CACHE_SIZE"] = "0"
        servers = [ServerProcess(n, env, tmp).start() for n in ("a", "b", "c")]
        clients = [httpx.AsyncClient(base_url=s.url) for s in servers]
        yield pg_url, clients
    finally:
        for c in clients:
            await c.aclose()
        for s in servers:
            s.stop()
        if bouncer:
            bouncer.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
        delete_prefix(prefix)
