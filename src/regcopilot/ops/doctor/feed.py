"""Doctor: how the app would hear the change log, and whether a pooler stands in the way.

A transaction-mode pooler (PgBouncer with `pool_mode = transaction`, Supabase's port 6543) runs
LISTEN on whichever server connection is free and hands it to someone else: the app's feed then
hears nothing (issue 19). Three signs, each read-only: PgBouncer's own admin console
(`SHOW POOLS` / `SHOW CONFIG`, readable when the user is one of its admin or stats users), the
port, and the proof itself — a LISTEN round trip, as the app does at every connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

from regcopilot.ops.doctor.report import OK, WARN, Result
from regcopilot.users.pg_feed import PROBE
from regcopilot.users.problems import postgres_hosts, postgres_where
from regcopilot.users.schema import NOTIFY_CHANNEL

SUPABASE_POOLER_PORT = 6543  # Supabase's transaction-mode pooler
FIX = ("set DATABASE_DIRECT_URL to the database's direct connection (Supabase: "
       "db.<project>.supabase.co:5432) so the feed LISTENs there")


def pgbouncer_pool_mode(url: str, timeout_s: float) -> str | None:
    """The pool mode PgBouncer applies to this URL's database, from its admin console (simple
    query protocol only, hence psycopg's client-side cursor); None when not readable."""
    import psycopg

    parts = urlsplit(url)
    database = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/pgbouncer", query=""))
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=max(1, int(timeout_s)),
                             cursor_factory=psycopg.ClientCursor) as conn:
            pools = conn.execute("SHOW POOLS")
            names = [d.name for d in pools.description or ()]
            for row in pools.fetchall():
                pool = dict(zip(names, row, strict=False))
                if pool.get("database") == database and pool.get("pool_mode"):
                    return str(pool["pool_mode"])
            for row in conn.execute("SHOW CONFIG").fetchall():
                if row[0] == "pool_mode":
                    return str(row[1])
    except psycopg.Error:
        return None
    return None


async def listen_round_trip(url: str, statement_cache: int, timeout_s: float) -> float | None:
    """Milliseconds until a NOTIFY from one connection reaches a LISTEN on another; None when
    it never does (or the database cannot be reached)."""
    import asyncpg

    token = f"{PROBE}{uuid.uuid4().hex}"
    heard = asyncio.Event()
    listener = sender = None
    try:
        listener = await asyncpg.connect(url, timeout=timeout_s,
                                         statement_cache_size=statement_cache)
        sender = await asyncpg.connect(url, timeout=timeout_s,
                                       statement_cache_size=statement_cache)
        await listener.add_listener(
            NOTIFY_CHANNEL, lambda *args: heard.set() if args[-1] == token else None)
        started = time.perf_counter()
        await sender.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, token)
        async with asyncio.timeout(min(timeout_s, 1.0)):
            await heard.wait()
        return (time.perf_counter() - started) * 1000
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    finally:
        for conn in (listener, sender):
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)


async def check_feed(url: str, direct_url: str | None, statement_cache: int,
                     poll_seconds: float, timeout_s: float) -> list[Result]:
    # libpq's multi-host form names several ports: any of them being the pooler's counts.
    port = next((port for _, port in postgres_hosts(url) if port == SUPABASE_POOLER_PORT),
                postgres_hosts(url)[0][1])
    mode = await asyncio.to_thread(pgbouncer_pool_mode, url, timeout_s)
    heard = await listen_round_trip(url, statement_cache, timeout_s)
    signs = []
    if mode is not None:
        signs.append(f"PgBouncer's SHOW POOLS says pool_mode={mode}")
    if port == SUPABASE_POOLER_PORT:
        signs.append(f"port {port} is Supabase's transaction pooler")
    if heard is None:
        signs.append("a LISTEN round trip on it was not heard within 1 s")
    transaction = mode in ("transaction", "statement") or port == SUPABASE_POOLER_PORT \
        or heard is None
    out: list[Result] = []
    where = postgres_where(url)
    if transaction:
        cache = "" if statement_cache == 0 else "; and set DATABASE_STATEMENT_CACHE_SIZE=0"
        out.append(Result("pooler", WARN, f"DATABASE_URL ({where}) is a transaction-mode "
                          f"pooler: {'; '.join(signs)}{cache}"))
    else:
        seen = f"PgBouncer in {mode} mode, " if mode else ""
        out.append(Result("pooler", OK, f"{seen}LISTEN round trip on DATABASE_URL heard in "
                          f"{heard:.0f} ms"))
    if direct_url:
        direct = await listen_round_trip(direct_url, 100, timeout_s)
        if direct is not None:
            out.append(Result("change feed", OK, "listen-direct: LISTEN on DATABASE_DIRECT_URL "
                              f"({postgres_where(direct_url)}), round trip {direct:.0f} ms"))
        else:
            out.append(Result("change feed", WARN, "poll: no LISTEN round trip on "
                              f"DATABASE_DIRECT_URL ({postgres_where(direct_url)}); the app "
                              f"reads the change log through DATABASE_URL every "
                              f"{poll_seconds:g} s instead - point it at the database itself, "
                              "not a pooler"))
    elif transaction:
        out.append(Result("change feed", WARN, f"poll: the app reads the change log every "
                          f"{poll_seconds:g} s (one query per process per period; bans still "
                          f"reach every instance within 2 s); to LISTEN instead, {FIX}"))
    else:
        out.append(Result("change feed", OK, "listen: LISTEN/NOTIFY on DATABASE_URL, checked "
                          "against the change log's head every second"))
    return out
