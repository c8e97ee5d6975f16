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
from tests.support import delete_prefix

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.asynccontextmanager
async def three_instances(name: str) -> AsyncIterator[tuple[str, list[httpx.AsyncClient]]]:
    """(database URL, a client per instance)."""
    db = f"regcopilot_{name}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{db}"')
    pg_url = f"postgresql://postgres@127.0.0.1:5432/{db}"
    prefix = f"regcopilot-{name}-{uuid.uuid4().hex[:8]}:copilot:auth:"
    tmp = Path(tempfile.mkdtemp(prefix=f"regcopilot-{name}-"))
    servers: list[ServerProcess] = []
    clients: list[httpx.AsyncClient] = []
    try:
        await reset_users(pg_url)
        env = cluster_env(pg_url, prefix, tmp)
        servers = [ServerProcess(n, env, tmp).start() for n in ("a", "b", "c")]
        clients = [httpx.AsyncClient(base_url=s.url) for s in servers]
        yield pg_url, clients
    finally:
        for c in clients:
            await c.aclose()
        for s in servers:
            s.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
        delete_prefix(prefix)
