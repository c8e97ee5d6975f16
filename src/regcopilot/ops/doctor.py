"""`regcopilot doctor`: the guide's troubleshooting steps as checks, one line each, printed as
they run. Read-only: it never creates the database, its schema or the secret file.

Exit status: 0 when nothing failed (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import typer

from regcopilot.local_token import token_path
from regcopilot.users.problems import (
    mask,
    os_reason,
    postgres_problem,
    postgres_where,
    sqlite_problem,
)

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
TIMEOUT_S = 3.0
SUPABASE_POOLER_PORT = 6543  # Supabase's transaction-mode pooler


class Problem(Exception):
    """A check's failure, with the one line the operator reads."""


@dataclass
class Result:
    name: str
    status: str
    message: str


@dataclass
class Facts:
    """What earlier checks learnt, for the later ones."""

    env: dict[str, str] = field(default_factory=dict)
    settings: Any = None
    redis_url: str | None = None
    redis_ok: bool | None = None
    redis_problem: str | None = None
    production: bool = False


def raw_environment() -> dict[str, str]:
    """The variables as the app would see them, even when some do not validate: `.env`
    first, the process environment over it (pydantic-settings' order)."""
    from dotenv import dotenv_values

    values = {k: v for k, v in dotenv_values(".env").items() if v is not None}
    values.update(os.environ)
    return values


# --- environment ------------------------------------------------------------------------------
def check_environment(facts: Facts) -> Result:
    from pydantic import ValidationError

    from regcopilot.config import ConfigError, Settings, load_settings

    facts.env = raw_environment()
    facts.production = facts.env.get("APP_ENV") == "production"
    dotenv = " (.env read)" if Path(".env").exists() else ""
    try:
        raw = Settings()
    except ValidationError:
        try:
            load_settings()
        except ConfigError as exc:
            raise Problem(str(exc)) from None
        raise
    facts.production = raw.production
    try:
        # No secret file made (the doctor leaves nothing behind) and nothing logged: the
        # doctor reports the secret and the TTL mismatch on their own lines.
        facts.settings = load_settings(create_secret=False, warn=False)
    except ConfigError as exc:
        raise Problem(str(exc)) from None
    facts.redis_url = facts.settings.REDIS_URL
    return Result("environment", OK, f"APP_ENV={raw.APP_ENV}; every setting valid{dotenv}")


def check_secret(facts: Facts) -> Result:
    s = facts.settings
    if s.NEXTAUTH_SECRET:
        size = len(s.NEXTAUTH_SECRET.encode())
        return Result("secret", OK, f"NEXTAUTH_SECRET set ({size} bytes)")
    path = Path(s.DATA_DIR) / ".nextauth_secret"
    where = "kept in" if path.exists() else "to be generated into"
    return Result("secret", WARN, f"NEXTAUTH_SECRET not set: the app uses a secret {where} "
                  f"{path.resolve()}; every instance needs the same one (openssl rand -base64 32)")


def check_settings(facts: Facts) -> list[Result]:
    s = facts.settings
    out = []
    if s.production and not s.secure_cookies:
        out.append(Result("public url", WARN, f"NEXTAUTH_URL={s.NEXTAUTH_URL} in production: "
                          "cookies are not Secure; use https://"))
    else:
        out.append(Result("public url", OK, f"NEXTAUTH_URL={s.NEXTAUTH_URL}"))
    if s.CACHE_TTL_SECONDS != s.SESSION_VALIDATION_INTERVAL_SECONDS:
        out.append(Result("ttl", WARN, f"CACHE_TTL_SECONDS={s.CACHE_TTL_SECONDS} differs from "
                          f"SESSION_VALIDATION_INTERVAL_SECONDS="
                          f"{s.SESSION_VALIDATION_INTERVAL_SECONDS}: {s.cache_ttl} s is used"))
    else:
        out.append(Result("ttl", OK, f"cache TTL = validation interval = {s.cache_ttl} s"))
    generated = token_path(s.DATA_DIR)
    if facts.env.get("OBSERVABILITY_TOKEN"):
        out.append(Result("monitoring", OK, "OBSERVABILITY_TOKEN set: monitors send "
                          "Authorization: Bearer to /api/observability and /metrics"))
    elif s.OBSERVABILITY_TOKEN:
        out.append(Result("monitoring", WARN if s.production else OK,
                          f"OBSERVABILITY_TOKEN not set: the app uses the token generated into "
                          f"{generated.resolve()}; monitor and cost --url read it from this "
                          "directory, other hosts need OBSERVABILITY_TOKEN"))
    else:
        out.append(Result("monitoring", WARN if s.production else OK,
                          "OBSERVABILITY_TOKEN not set: serve generates one into "
                          f"{generated.resolve()} for /api/observability and /metrics"))
    supabase = [k for k in ("NEXT_PUBLIC_SUPABASE_URL", "NEXT_PUBLIC_SUPABASE_ANON_KEY",
                            "SUPABASE_SERVICE_ROLE_KEY") if facts.env.get(k)]
    if supabase and s.DATABASE_URL.startswith("sqlite"):
        out.append(Result("supabase", WARN, f"{', '.join(supabase)} set but DATABASE_URL is "
                          "SQLite: users come from the local file; point DATABASE_URL at the "
                          "project's Postgres"))
    return out


# --- Redis ------------------------------------------------------------------------------------
async def _tcp(host: str, port: int) -> float:
    started = time.perf_counter()
    try:
        _r, w = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT_S)
    except TimeoutError:
        raise Problem(f"cannot reach {host}:{port}: no answer within {TIMEOUT_S:g} s "
                      "(firewall or wrong host?)") from None
    except OSError as exc:
        raise Problem(f"cannot reach {host}:{port}: {os_reason(exc)}") from None
    w.close()
    return (time.perf_counter() - started) * 1000


def _tls_context(query: dict[str, list[str]]) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if "ssl_ca_certs" in query:
        ctx.load_verify_locations(query["ssl_ca_certs"][0])
    if query.get("ssl_cert_reqs", [""])[0].lower() in ("none", "cert_none"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _tls(host: str, port: int, query: dict[str, list[str]]) -> str:
    try:
        ctx = _tls_context(query)
        _r, w = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ctx, server_hostname=host), TIMEOUT_S
        )
    except TimeoutError:
        raise Problem(f"TLS handshake with {host}:{port} got no answer within {TIMEOUT_S:g} s "
                      "(is the server plain redis://?)") from None
    except ssl.SSLCertVerificationError as exc:
        raise Problem(f"TLS certificate refused: {exc.verify_message or exc} (give the CA with "
                      "?ssl_ca_certs=/path/ca.pem)") from None
    except (ssl.SSLError, ConnectionError) as exc:
        raise Problem(f"TLS handshake failed: {exc} (is the server plain redis://? "
                      "then use redis://)") from None
    except OSError as exc:
        raise Problem(f"TLS: {exc}") from None
    sslobj = w.get_extra_info("ssl_object")
    version = sslobj.version() if sslobj else "TLS"
    w.close()
    return f"{version}, certificate verified" if ctx.verify_mode != ssl.CERT_NONE else \
        f"{version}, certificate NOT verified (ssl_cert_reqs=none)"


def _auth_problem(text: str, has_password: bool) -> str | None:
    lowered = text.lower()
    if ("noauth" in lowered or "authentication required" in lowered
            or "client already authenticated" in lowered):
        return ("authentication failed: the server requires a password and REDIS_URL has none "
                "(redis://:<password>@host:6379)")
    if "wrongpass" in lowered or "invalid password" in lowered or "invalid username" in lowered:
        return "authentication failed: wrong username or password in REDIS_URL"
    if "without any password configured" in lowered or "auth <password> called" in lowered:
        return "authentication failed: REDIS_URL gives a password the server does not have"
    if "noperm" in lowered:
        return f"authentication failed: the user lacks a permission ({text})"
    return None


async def _ping(url: str, has_password: bool, tls: bool) -> str:
    from regcopilot.cache.redis import connect

    client = connect(url, TIMEOUT_S)
    try:
        started = time.perf_counter()
        await client.ping()
        ms = (time.perf_counter() - started) * 1000
        version = "?"
        try:
            info = await client.info("server")
            version = info.get("redis_version", "?")
        except Exception:  # INFO may be renamed or forbidden by ACLs; PING is what counts
            pass
        return f"PING answered in {ms:.1f} ms (Redis {version})"
    except Exception as exc:
        text = str(exc) or type(exc).__name__
        problem = _auth_problem(text, has_password)
        if problem:
            raise Problem(problem) from None
        if not tls and ("connection reset" in text.lower() or "closed" in text.lower()):
            raise Problem(f"PING failed: {text} (does the server want TLS? try rediss://)") \
                from None
        raise Problem(f"PING failed: {text}") from None
    finally:
        await client.aclose()


def redis_checks(facts: Facts) -> list[tuple[str, Callable[[], Awaitable[str] | str]]]:
    """The layers a REDIS_URL goes through, each its own line so the failing one is named."""
    url = facts.redis_url if facts.settings is not None else (facts.env.get("REDIS_URL") or None)
    if not url:
        return []
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = parse_qs(parts.query)
    steps: list[tuple[str, Callable[[], Awaitable[str] | str]]] = []

    def parse() -> str:
        if scheme not in ("redis", "rediss", "unix") and "+" not in scheme:
            raise Problem(f"REDIS_URL {mask(url)}: scheme {scheme or '(none)'}:// is not "
                          "redis://, rediss:// or unix://")
        if scheme == "unix":
            return f"unix socket {parts.path}"
        if "+" in scheme:
            return f"{scheme}:// (Sentinel/Cluster) {mask(url)}"
        if not parts.hostname:
            raise Problem(f"REDIS_URL {mask(url)} names no host")
        try:
            port = parts.port or 6379
        except ValueError:
            raise Problem(f"REDIS_URL {mask(url)} has an invalid port") from None
        db = parts.path.strip("/") or "0"
        if not db.isdigit():
            raise Problem(f"REDIS_URL {mask(url)} has an invalid database number {db!r}")
        auth = "no password"
        if parts.password is not None:
            auth = f"password as user {parts.username}" if parts.username else "password"
        tls = "TLS" if scheme == "rediss" else "no TLS"
        return f"{mask(url)}: host {parts.hostname}, port {port}, db {db}, {auth}, {tls}"

    steps.append(("redis url", parse))
    if scheme in ("redis", "rediss"):
        host, port = parts.hostname or "", _port(parts)

        async def reach() -> str:
            return f"TCP {host}:{port} open in {await _tcp(host, port):.1f} ms"

        steps.append(("redis reach", reach))
        if scheme == "rediss":
            async def tls() -> str:
                return await _tls(host, port, query)

            steps.append(("redis tls", tls))
    elif scheme == "unix":
        def socket_file() -> str:
            if not Path(parts.path).exists():
                raise Problem(f"no socket at {parts.path}")
            return f"socket {parts.path} exists"

        steps.append(("redis reach", socket_file))

    async def ping() -> str:
        return await _ping(url, parts.password is not None, scheme.startswith("rediss"))

    steps.append(("redis auth+ping", ping))
    return steps


def _port(parts: Any) -> int:
    try:
        return parts.port or 6379
    except ValueError:
        return 6379


# --- database ---------------------------------------------------------------------------------
def _sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def check_sqlite(url: str) -> list[Result]:
    path = _sqlite_path(url)
    where = path.resolve()
    if not path.exists():
        rel = f" (relative to {Path.cwd()})" if not path.is_absolute() else ""
        raise Problem(f"no database at {where}{rel}: the app would start with an empty user "
                      "directory; check DATABASE_URL and the working directory")
    try:
        conn = sqlite3.connect(f"file:{where}?mode=ro", uri=True, timeout=TIMEOUT_S)
    except sqlite3.Error as exc:
        raise Problem(sqlite_problem(url, exc)) from None
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "auth_users" not in tables:
            raise Problem(f"{where} has no auth_users table: not this app's database? (the "
                          "app would create an empty one)")
        users, admins = conn.execute(
            "SELECT count(*), sum(json_extract(raw_app_meta_data, '$.role') = 'admin') "
            "FROM auth_users WHERE deleted_at IS NULL"
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise Problem(f"cannot read {where}: {exc}") from None
    finally:
        conn.close()
    feed = "change log present" if "auth_user_changes" in tables else \
        "change log missing (created at start)"
    return [
        Result("database", OK, f"SQLite {where} readable"),
        Result("schema", OK, f"auth_users present; {feed}"),
        _users_result(users or 0, admins or 0),
    ]


async def check_postgres(url: str, statement_cache: int) -> list[Result]:
    import asyncpg

    parts = urlsplit(url)
    where = postgres_where(url)
    started = time.perf_counter()
    try:
        conn = await asyncpg.connect(url, timeout=TIMEOUT_S)
    except Exception as exc:
        raise Problem(postgres_problem(url, exc, TIMEOUT_S)) from None
    ms = (time.perf_counter() - started) * 1000
    try:
        version = conn.get_server_version()
        table = await conn.fetchval("SELECT to_regclass('auth.users') IS NOT NULL")
        if not table:
            raise Problem(f"no auth.users table in {where}: not Supabase's database, or the "
                          "app has never started on it (it would create an empty one)")
        users, admins = await conn.fetchrow(
            "SELECT count(*), count(*) FILTER (WHERE raw_app_meta_data->>'role' = 'admin') "
            "FROM auth.users WHERE deleted_at IS NULL"
        )
        trigger = await conn.fetchval(
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'regcopilot_user_changed'"
        )
    except asyncpg.PostgresError as exc:
        raise Problem(f"cannot read auth.users in {where}: {exc}") from None
    finally:
        await conn.close()
    out = [Result("database", OK, f"PostgreSQL {version.major}.{version.minor} at {where}, "
                  f"connected in {ms:.0f} ms")]
    feed = "change trigger installed" if trigger else "change trigger missing (installed at start)"
    out.append(Result("schema", OK, f"auth.users present; {feed}"))
    out.append(_users_result(users, admins))
    if (parts.port or 5432) == SUPABASE_POOLER_PORT and statement_cache != 0:
        out.append(Result("pooler", WARN, f"port {SUPABASE_POOLER_PORT} is Supabase's "
                          "transaction pooler: set DATABASE_STATEMENT_CACHE_SIZE=0"))
    return out


def _users_result(users: int, admins: int) -> Result:
    if users == 0:
        return Result("users", WARN, "no users yet: regcopilot users add --email "
                      "admin@example.com --admin")
    if admins == 0:
        return Result("users", WARN, f"{users} user(s), no admin: nobody can open "
                      "/admin/observability (users add --admin)")
    return Result("users", OK, f"{users} user(s), {admins} admin(s)")


# --- backend ----------------------------------------------------------------------------------
def backend_decision(facts: Facts) -> Result:
    if not facts.redis_url:
        status = WARN if facts.production else OK
        return Result("cache backend", status, "in-memory: REDIS_URL not set (log line "
                      "'REDIS_URL not configured - using in-memory cache'); one instance only"
                      + (" - production wants Redis" if facts.production else ""))
    if facts.redis_ok:
        return Result("cache backend", OK, "redis: REDIS_URL set and Redis answered (log line "
                      "'Redis cache connected successfully'); an in-memory tier sits in front")
    return Result("cache backend", WARN, "redis-disconnected: REDIS_URL is set but the "
                  f"'{facts.redis_problem}' check failed; the app would start on its in-memory "
                  "tier and keep probing Redis, backing off to every 2 s")


# --- running ----------------------------------------------------------------------------------
class Printer:
    """One line per check as soon as it is known; on a terminal, the running check shows
    first so a slow one is visibly in progress."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.results: list[Result] = []

    def running(self, name: str) -> None:
        if self.tty:
            sys.stdout.write(f"  ...  {name:16} checking\r")
            sys.stdout.flush()

    def show(self, result: Result) -> None:
        self.results.append(result)
        label = result.status.ljust(4)
        if self.tty:
            colour = {OK: "green", WARN: "yellow", FAIL: "red"}.get(result.status)
            label = typer.style(label, fg=colour, bold=result.status == FAIL) if colour else label
            sys.stdout.write("\r\033[K")
        typer.echo(f"{label}  {result.name:16} {result.message}")


async def _run(step: Callable[[], Any]) -> Any:
    value = step()
    if asyncio.iscoroutine(value):
        value = await value
    return value


async def diagnose(printer: Printer) -> list[Result]:
    facts = Facts()

    async def one(name: str, step: Callable[[], Any]) -> Any:
        printer.running(name)
        try:
            value = await _run(step)
        except Problem as exc:
            printer.show(Result(name, FAIL, str(exc)))
            return None
        if isinstance(value, Result):
            printer.show(value)
        elif isinstance(value, list):
            for r in value:
                printer.show(r)
        else:
            printer.show(Result(name, OK, str(value)))
        return value

    env_ok = await one("environment", lambda: check_environment(facts)) is not None
    if env_ok:
        await one("secret", lambda: check_secret(facts))
        await one("settings", lambda: check_settings(facts))
    else:
        facts.env = facts.env or raw_environment()
        facts.redis_url = facts.env.get("REDIS_URL") or None

    if facts.redis_url or facts.env.get("REDIS_URL"):
        facts.redis_ok = True
        for name, step in redis_checks(facts):
            if await one(name, step) is None:
                facts.redis_ok = False
                facts.redis_problem = name
                break
    else:
        printer.show(Result("redis", SKIP if not facts.production else WARN,
                            "REDIS_URL not set"))

    db_url = facts.settings.DATABASE_URL if facts.settings else facts.env.get(
        "DATABASE_URL", "sqlite:///./data/regcopilot.db")
    if db_url.startswith("sqlite:///"):
        await one("database", lambda: check_sqlite(db_url))
    elif db_url.split(":", 1)[0] in ("postgres", "postgresql"):
        cache = facts.settings.DATABASE_STATEMENT_CACHE_SIZE if facts.settings else 100
        await one("database", lambda: check_postgres(db_url, cache))
    else:
        printer.show(Result("database", FAIL, f"DATABASE_URL {mask(db_url)} is neither "
                            "postgresql:// nor sqlite:///"))

    if env_ok:
        printer.show(backend_decision(facts))
    return printer.results


def doctor(
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait at each network step.")
                       ] = TIMEOUT_S,
) -> None:
    """Check settings, Redis, the user directory and the cache backend the app would pick."""
    global TIMEOUT_S
    TIMEOUT_S = timeout
    printer = Printer()
    results = asyncio.run(diagnose(printer))
    failed = [r for r in results if r.status == FAIL]
    warned = [r for r in results if r.status == WARN]
    typer.echo(f"{len(results)} checks: {len(failed)} failed, {len(warned)} warning(s)")
    raise typer.Exit(1 if failed else 0)

