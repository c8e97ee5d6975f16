"""Fixtures on the real services of this machine kind: PostgreSQL at 127.0.0.1:5432 and Redis
at 127.0.0.1:6379. Each test run uses its own database and its own Redis key prefix, and removes
them afterwards; nothing else on those servers is touched."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from regcopilot.config import load_settings
from regcopilot.web.app import create_app
from regcopilot.web.services import Services
from tests.support import TEST_HASH_ROUNDS, delete_prefix, hash_password, new_prefix

PG_ADMIN = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_SECRET = "test-secret-" + "x" * 40
PASSWORD = "correct horse battery"


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="session")
def pg_url() -> Any:
    """A fresh PostgreSQL database for this test process, dropped at the end."""
    name = f"regcopilot_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    _run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    _run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def gotrue_url() -> Any:
    """A fresh database holding Supabase Auth's real schema (the shared GoTrue dump), for this
    test process; dropped at the end. Skips (fails in CI) without the file."""
    from tests.gotrue import schema_or_skip, schema_sql

    sql = schema_sql(schema_or_skip())
    name = f"regcopilot_gotrue_{uuid.uuid4().hex[:12]}"
    base = PG_ADMIN.rsplit("/", 1)[0]

    async def create() -> None:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        conn = await asyncpg.connect(f"{base}/{name}")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def drop() -> None:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    # In a thread: first asked for from inside a running test (settings_for("gotrue")).
    try:
        _run_in_thread(create())
    except BaseException:
        _run_in_thread(drop())
        raise
    yield f"{base}/{name}"
    _run_in_thread(drop())


async def clean_users(url: str) -> None:
    """Empty the users and session records of a test database (its identities and
    auth.sessions go with the users)."""
    conn = await asyncpg.connect(url)
    try:
        if await conn.fetchval("SELECT to_regclass('auth.users') IS NOT NULL"):
            await conn.execute("DELETE FROM auth.users")
        if await conn.fetchval("SELECT to_regclass('public.regcopilot_sessions') IS NOT NULL"):
            await conn.execute("DELETE FROM public.regcopilot_sessions")
    finally:
        await conn.close()


def database_url(request: pytest.FixtureRequest, directory: str, tmp_path: Any,
                 pg_url: str, cleaned: set[str]) -> str:
    """DATABASE_URL for 'sqlite' | 'postgres' (our schema) | 'gotrue' (Supabase Auth's; its
    users emptied on the test's first use, kept across the test's restarts)."""
    if directory == "sqlite":
        return f"sqlite:///{tmp_path}/users.db"
    if directory == "gotrue":
        url: str = request.getfixturevalue("gotrue_url")
        if url not in cleaned:
            _run_in_thread(clean_users(url))
            cleaned.add(url)
        return url
    return pg_url


def _run_in_thread(coro: Any) -> None:
    """Run a coroutine to completion from sync code that may sit inside a running loop."""
    failure: list[BaseException] = []

    def work() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


@pytest.fixture
def redis_prefix() -> Any:
    """A key prefix of this test's own on the shared Redis, deleted afterwards."""
    prefix = new_prefix()
    yield prefix
    delete_prefix(prefix, REDIS_URL)


@dataclass
class Instance:
    """An app under test, served in process through httpx."""

    client: httpx.AsyncClient
    services: Services

    async def login(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return await self.client.post(
            "/api/auth/login", json={"email": email, "password": password}
        )

    async def add_user(self, email: str, *, admin: bool = False, password: str = PASSWORD,
                       tenant: str | None = None) -> str:
        user = await self.services.directory.add(
            email, hash_password(password), admin=admin, tenant_id=tenant
        )
        return user.id

    def counters(self) -> dict[str, int]:
        return self.services.metrics.process_totals()


@pytest.fixture
def settings_for(request: pytest.FixtureRequest, tmp_path: Any, pg_url: str,
                 redis_prefix: str) -> Callable[..., Any]:
    """Settings for a directory ('sqlite'|'postgres'|'gotrue') × cache ('memory'|'redis'|URL);
    'gotrue' is Supabase Auth's own schema, emptied of users when asked for."""

    cleaned: set[str] = set()

    def make(directory: str = "sqlite", cache: str = "memory", **overrides: Any) -> Any:
        db = database_url(request, directory, tmp_path, pg_url, cleaned)
        redis_url = {"memory": None, "redis": REDIS_URL}.get(cache, cache)
        values: dict[str, Any] = {
            "DATABASE_URL": db,
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": redis_prefix,
            "NEXTAUTH_SECRET": TEST_SECRET,
            "DATA_DIR": str(tmp_path / "data"),
            "OBSERVABILITY_TOKEN": "monitor-token",
            "PASSWORD_HASH_ROUNDS": TEST_HASH_ROUNDS,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
async def pg_clean(pg_url: str) -> AsyncIterator[None]:
    """Postgres tests share one database per process: empty the users and sessions first."""
    await clean_users(pg_url)
    yield


@contextlib.asynccontextmanager
async def serve(settings: Any) -> AsyncIterator[Instance]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Instance(client, app.services)


@pytest.fixture
def instance(settings_for: Callable[..., Any], pg_clean: None) -> Callable[..., Any]:
    """`async with instance("postgres", "redis") as app:` — an app on real backends."""

    def make(directory: str = "sqlite", cache: str = "memory", **overrides: Any) -> Any:
        return serve(settings_for(directory, cache, **overrides))

    return make


@pytest.fixture
def pair(instance: Callable[..., Any]) -> Callable[..., Any]:
    """`async with pair("postgres", "redis") as (a, b):` two instances on one directory and
    (for redis) one Redis."""

    def make(directory: str, cache: str) -> Any:
        @contextlib.asynccontextmanager
        async def both() -> AsyncIterator[tuple[Instance, Instance]]:
            async with instance(directory, cache) as a, instance(directory, cache) as b:
                yield a, b

        return both()

    return make


@pytest.fixture
async def shared_redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


WATCHDOG_SECONDS = 90


@pytest.fixture
async def _task_watchdog(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """A test still running after WATCHDOG_SECONDS prints every asyncio task's stack, so a
    hang in CI says which await never returned (pytest-timeout shows only threads)."""
    loop = asyncio.get_running_loop()

    def dump() -> None:
        print(f"\n--- {request.node.nodeid}: asyncio tasks after {WATCHDOG_SECONDS}s ---")
        for task in asyncio.all_tasks(loop):
            task.print_stack(limit=12)

    timer = threading.Timer(WATCHDOG_SECONDS, lambda: loop.call_soon_threadsafe(dump))
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if asyncio.iscoroutinefunction(getattr(item, "obj", None)):
            item.add_marker(pytest.mark.usefixtures("_task_watchdog"))


@pytest.fixture(scope="module")
def servers(pg_url: str, tmp_path_factory: Any) -> Any:
    """Three `regcopilot serve` processes on this module's PostgreSQL database (users reset)
    and a Redis key prefix of their own, stopped and removed after the module."""
    from tests.cluster import cluster_env, reset_users, running

    prefix = new_prefix()
    data = tmp_path_factory.mktemp("cluster")
    asyncio.run(reset_users(pg_url))
    try:
        with running(cluster_env(pg_url, prefix, data), data, ("a", "b", "c")) as procs:
            yield procs
    finally:
        delete_prefix(prefix, REDIS_URL)


@pytest.fixture(scope="session")
def pgbouncers(pg_url: str) -> Any:
    """`pgbouncers("transaction")`: a PgBouncer of this run's own in front of its database,
    started on first use, stopped by PID at the end (tests/pgbouncer.py)."""
    from tests.pgbouncer import PgBouncer

    started: dict[str, PgBouncer] = {}

    def get(mode: str) -> PgBouncer:
        if mode not in started:
            started[mode] = PgBouncer(pg_url, mode).start()
        return started[mode]

    yield get
    for bouncer in started.values():
        bouncer.stop()


@pytest.fixture
def route(request: pytest.FixtureRequest, pg_url: str, pgbouncers: Any) -> dict[str, Any]:
    """Parametrize indirectly with a name from tests/pgbouncer.py's ROUTES: the settings that
    put an instance's DATABASE_URL on that route."""
    from tests.pgbouncer import ROUTES, route_settings

    mode = ROUTES[request.param][0]
    return route_settings(request.param, pg_url, pgbouncers(mode) if mode else None)
