"""The change feed's own cost per instance, by mode: database queries per second of an idle
instance (no requests: everything counted is the feed's keep-alive, poll and pruning).

    .venv/bin/python bench/feed_cost.py [--seconds 30]

Every instance reaches this machine's PostgreSQL through a PgBouncer of the bench's own, and
the count is PgBouncer's (`SHOW STATS`, total_query_count of the bench's database), so the
three modes are counted alike:
- poll: DATABASE_URL through PgBouncer in transaction mode, no DATABASE_DIRECT_URL;
- listen-direct: the same, with DATABASE_DIRECT_URL through a session-mode PgBouncer;
- listen: DATABASE_URL through the session-mode PgBouncer.
One instance at a time, without Redis (in-memory cache: nothing else in the process talks to
the database while idle). A database of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from regcopilot.config import load_settings
from regcopilot.web.services import build_services
from tests.pgbouncer import PgBouncer

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def queries(bouncer: PgBouncer, database: str) -> int:
    with psycopg.connect(bouncer.admin_url, autocommit=True,
                         cursor_factory=psycopg.ClientCursor) as conn:
        cur = conn.execute("SHOW STATS")
        names = [d.name for d in cur.description or ()]
        for row in cur.fetchall():
            stats = dict(zip(names, row, strict=False))
            if stats["database"] == database:
                return int(stats["total_query_count"])
    return 0


async def measure(mode: str, overrides: dict[str, object], bouncers: list[PgBouncer],
                  database: str, seconds: float, data: str) -> float:
    settings = load_settings(NEXTAUTH_SECRET="b" * 40, REDIS_URL=None, DATA_DIR=data,
                             OBSERVABILITY_TOKEN="t", **overrides)
    services = build_services(settings)
    await services.start()
    try:
        deadline = time.monotonic() + 15
        while not (services.feed.complete and services.feed.mode == mode):
            if time.monotonic() > deadline:
                raise SystemExit(f"{mode}: feed not proved ({services.feed.report()})")
            await asyncio.sleep(0.05)
        await asyncio.sleep(2)  # past the start-up reads
        before = sum(queries(b, database) for b in bouncers)
        started = time.monotonic()
        await asyncio.sleep(seconds)
        after = sum(queries(b, database) for b in bouncers)
        return (after - before) / (time.monotonic() - started)
    finally:
        await services.close()


async def main(seconds: float) -> None:
    database = f"regcopilot_bench_feed_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{database}"')
    direct = f"postgresql://postgres@127.0.0.1:5432/{database}"
    tx = PgBouncer(direct, "transaction").start()
    session = PgBouncer(direct, "session").start()
    try:
        with tempfile.TemporaryDirectory() as data:
            runs = {
                "poll": {"DATABASE_URL": tx.url, "DATABASE_STATEMENT_CACHE_SIZE": 0},
                "listen-direct": {"DATABASE_URL": tx.url, "DATABASE_STATEMENT_CACHE_SIZE": 0,
                                  "DATABASE_DIRECT_URL": session.url},
                "listen": {"DATABASE_URL": session.url},
            }
            print(f"idle instance, {seconds:g} s each, queries counted by PgBouncer")
            for mode, overrides in runs.items():
                rate = await measure(mode, overrides, [tx, session], database, seconds, data)
                print(f"  {mode:14} {rate:5.2f} queries/s per instance "
                      f"({rate * 3600:,.0f}/h)")
    finally:
        tx.stop()
        session.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    asyncio.run(main(parser.parse_args().seconds))
