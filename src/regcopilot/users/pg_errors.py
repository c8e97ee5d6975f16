"""Which asyncpg errors mean "PostgreSQL cannot answer" (a 503, a reconnect), shared by the
directory's pool and its change feed."""

from __future__ import annotations

import asyncpg

# Errors that mean "the directory cannot answer", as opposed to a bug in a query.
UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.QueryCanceledError,
    # Seen when the server terminates a connection mid-query (another operation in progress).
    asyncpg.InternalClientError,
)
# A pooled connection the server dropped (restart, failover) fails when next used, and the pool
# then replaces it: a read gets one immediate second try. Timeouts are never retried.
DROPPED = (asyncpg.ConnectionDoesNotExistError,)
