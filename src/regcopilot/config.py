"""Settings from the environment (and a `.env` file), checked once at startup.

A bad value raises ConfigError whose message is one line naming the variable, so an operator
sees exactly what to fix instead of a traceback.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from regcopilot.local_token import read_token

log = logging.getLogger("regcopilot.config")

MIN_SECRET_BYTES = 32
SECRET_FILE = ".nextauth_secret"
NEW_SECRET = "make one with: openssl rand -base64 32"
# Set by `regcopilot serve` once it has loaded (and warned about) the settings, for the uvicorn
# workers it starts: they load them again, and would say every warning a second time.
SETTINGS_CHECKED = "REGCOPILOT_SETTINGS_CHECKED"
MULTI_HOST_REDIS_SCHEMES = ("redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster")


class ConfigError(Exception):
    """A configuration value that stops startup; str() is one line for the operator."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    NEXTAUTH_SECRET: str | None = None
    NEXTAUTH_URL: str = "http://localhost:3000"
    DATABASE_URL: str = "sqlite:///./data/regcopilot.db"
    DATABASE_TIMEOUT_SECONDS: float = 2.0
    DATABASE_POOL_SIZE: int = 10
    # Supabase's transaction-mode pooler rejects prepared statements; 0 turns asyncpg's cache off.
    DATABASE_STATEMENT_CACHE_SIZE: int = 100
    # The change feed's own connection when DATABASE_URL goes through a transaction-mode
    # pooler, which hands LISTEN's server connection to other clients (users/feed.py). Unset:
    # LISTEN on DATABASE_URL if a round trip is heard there, else read the log on a period.
    DATABASE_DIRECT_URL: str | None = None
    # That period (poll mode); 1 s keeps the 2 s lockout bound with room for a slow query.
    CHANGE_FEED_POLL_SECONDS: float = 1.0
    NEXT_PUBLIC_SUPABASE_URL: str | None = None
    NEXT_PUBLIC_SUPABASE_ANON_KEY: str | None = None
    SUPABASE_SERVICE_ROLE_KEY: str | None = None
    SUPABASE_DEMO_TENANT_ID: str = "default"
    # GoTrue's own setting, read the same way: true lets unconfirmed emails sign in (email
    # confirmations off). Default false: confirmations required, as on hosted Supabase.
    GOTRUE_MAILER_AUTOCONFIRM: bool = False
    REDIS_URL: str | None = None
    REDIS_TIMEOUT_MS: int = 50
    REDIS_KEY_PREFIX: str = "copilot:auth:"
    CACHE_TTL_SECONDS: int = 300
    # How long an entry may be served while every change since it was read is known to have
    # been applied (cache/freshness.py); CACHE_TTL_SECONDS whenever that cannot be proved.
    CACHE_MAX_AGE_SECONDS: int = 6 * 3600
    MAX_CACHE_SIZE: int = 10_000
    SESSION_VALIDATION_INTERVAL_SECONDS: int = 300
    SESSION_MAX_AGE_SECONDS: int = 86_400
    # Sliding sessions (after NextAuth's `updateAge`): a session read (/api/auth/session) on a
    # cookie older than this re-issues it with a fresh SESSION_MAX_AGE_SECONDS. Each slide signs
    # one token and writes the session record's expiry (so a revocation covers the new expiry):
    # 1 h bounds that to 24 per active session a day while an active user is never cut off.
    SESSION_UPDATE_AGE_SECONDS: int = 3600
    # However active, a session ends this long after its sign-in (OWASP ASVS V3.3): sign in again.
    SESSION_ABSOLUTE_MAX_AGE_SECONDS: int = 30 * 86_400
    # The session cookie this tier issues: its own (default), or NextAuth v4's cookie and JWE
    # format so the upstream Node tier accepts it while both run behind one balancer
    # (docs/migration.md). Either way both formats are accepted.
    SESSION_COOKIE_FORMAT: Literal["regcopilot", "nextauth"] = "regcopilot"
    OBSERVABILITY_TOKEN: str | None = None
    # Brute-force limits on failed sign-ins (auth/rate_limit.py), shared through Redis.
    LOGIN_MAX_FAILURES_PER_ACCOUNT: int = 10
    LOGIN_MAX_FAILURES_PER_ADDRESS: int = 50
    LOGIN_LOCKOUT_SECONDS: int = 900
    # Password work (auth/password_pool.py): bcrypt cost of new hashes, hashing threads
    # (0 = one per core), and sign-ins allowed to wait for one before the rest get 503.
    PASSWORD_HASH_ROUNDS: int = 12
    PASSWORD_WORKERS: int = 0
    PASSWORD_QUEUE_SIZE: int = 32
    # Clock skew allowed between the host that signed a token and this one (iat, nbf, and
    # the cap on exp - iat).
    TOKEN_CLOCK_LEEWAY_SECONDS: int = 60
    # The in-process memory budget (docs/operators.md: per-entry cost, totals).
    DECODED_TOKEN_CACHE_SIZE: int = 50_000
    ACTIVE_USERS_TRACKED: int = 200_000
    REVOCATIONS_KEPT_LOCALLY: int = 100_000
    # Slow and idle clients (web/connections.py).
    HTTP_HEADER_TIMEOUT_SECONDS: float = 10.0
    HTTP_KEEPALIVE_TIMEOUT_SECONDS: float = 5.0
    HTTP_MAX_CONNECTIONS: int = 1000
    SHUTDOWN_DRAIN_SECONDS: float = 5.0
    APP_ENV: Literal["development", "production"] = "development"
    DATA_DIR: str = "./data"
    LOG_LEVEL: str = "INFO"

    @field_validator("NEXTAUTH_URL")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return v.rstrip("/")

    @field_validator("DATABASE_DIRECT_URL")
    @classmethod
    def _direct_url(cls, v: str | None) -> str | None:
        if v is None or v.strip() == "":
            return None
        parts = urlsplit(v)
        if parts.scheme in ("postgres", "postgresql") and parts.hostname:
            return v
        raise ValueError("must be postgresql://user@host:5432/db (the direct connection)")

    @field_validator("CHANGE_FEED_POLL_SECONDS")
    @classmethod
    def _poll_period(cls, v: float) -> float:
        if not 0.05 <= v <= 1.0:
            raise ValueError("must be between 0.05 and 1 (the lockout bound is 2 s)")
        return v

    @field_validator("DATABASE_URL")
    @classmethod
    def _db_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme in ("postgres", "postgresql") and parts.hostname:
            return v
        if parts.scheme == "sqlite" and v.startswith("sqlite:///") and len(v) > len("sqlite:///"):
            return v
        raise ValueError("must be postgresql://user@host/db or sqlite:///path")

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_url(cls, v: str | None) -> str | None:
        if v is None or v.strip() == "":
            return None
        scheme, _, rest = v.partition("://")
        if scheme.lower() in MULTI_HOST_REDIS_SCHEMES:
            # Several hosts (Sentinels, cluster seeds): urlsplit cannot read them.
            hosts = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
            for item in hosts.split(","):
                host, _, port = item.rpartition(":")
                if not host or not port.isdigit():
                    raise ValueError(f"has an invalid host:port {item!r}")
            if scheme.lower().endswith("sentinel") and not rest.partition("/")[2].strip("/"):
                raise ValueError("needs the master name: redis+sentinel://host:26379/mymaster")
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("redis", "rediss", "unix") or (
            parts.scheme != "unix" and not parts.hostname
        ):
            raise ValueError(
                "must be redis://host:6379, redis://:<password>@host:6379, rediss://, "
                "redis+sentinel://host:26379/<master> or redis+cluster://host:6379"
            )
        try:
            parts.port  # noqa: B018 - raises on a non-numeric port
        except ValueError as exc:
            raise ValueError("has an invalid port") from exc
        return v

    @field_validator("NEXT_PUBLIC_SUPABASE_URL")
    @classmethod
    def _supabase_url(cls, v: str | None) -> str | None:
        if v and not (urlsplit(v).scheme in ("http", "https") and urlsplit(v).hostname):
            raise ValueError("must be an https:// URL such as https://xxx.supabase.co")
        return v or None

    @field_validator(
        "CACHE_TTL_SECONDS",
        "CACHE_MAX_AGE_SECONDS",
        "MAX_CACHE_SIZE",
        "SESSION_VALIDATION_INTERVAL_SECONDS",
        "SESSION_MAX_AGE_SECONDS",
        "SESSION_UPDATE_AGE_SECONDS",
        "SESSION_ABSOLUTE_MAX_AGE_SECONDS",
        "REDIS_TIMEOUT_MS",
        "DATABASE_POOL_SIZE",
        "LOGIN_MAX_FAILURES_PER_ACCOUNT",
        "LOGIN_MAX_FAILURES_PER_ADDRESS",
        "LOGIN_LOCKOUT_SECONDS",
        "PASSWORD_QUEUE_SIZE",
        "DECODED_TOKEN_CACHE_SIZE",
        "ACTIVE_USERS_TRACKED",
        "REVOCATIONS_KEPT_LOCALLY",
        "HTTP_MAX_CONNECTIONS",
    )
    @classmethod
    def _positive(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("must be greater than 0")
        return v

    @field_validator("PASSWORD_HASH_ROUNDS")
    @classmethod
    def _bcrypt_rounds(cls, v: int) -> int:
        if not 4 <= v <= 31:
            raise ValueError("must be between 4 and 31 (bcrypt's cost range)")
        return v

    @field_validator("PASSWORD_WORKERS", "TOKEN_CLOCK_LEEWAY_SECONDS", "SHUTDOWN_DRAIN_SECONDS")
    @classmethod
    def _not_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must be 0 or more")
        return v

    @field_validator(
        "DATABASE_TIMEOUT_SECONDS", "HTTP_HEADER_TIMEOUT_SECONDS", "HTTP_KEEPALIVE_TIMEOUT_SECONDS"
    )
    @classmethod
    def _positive_float(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be greater than 0")
        return v

    @property
    def production(self) -> bool:
        return self.APP_ENV == "production"

    @property
    def secure_cookies(self) -> bool:
        return self.NEXTAUTH_URL.startswith("https://")

    @property
    def cache_ttl(self) -> int:
        """The TTL in force: the guide wants it equal to the interval; the smaller wins."""
        return min(self.CACHE_TTL_SECONDS, self.SESSION_VALIDATION_INTERVAL_SECONDS)

    @property
    def cache_max_age(self) -> int:
        """Never shorter than the TTL: a max age below it would only add misses."""
        return max(self.CACHE_MAX_AGE_SECONDS, self.cache_ttl)

    @property
    def change_log_keep_seconds(self) -> int:
        """The change log outlives every entry that may still be checked against it."""
        return self.cache_max_age + 3600


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else "configuration"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{name} {msg}" if not msg.startswith(name) else msg


def _load_or_create_secret(data_dir: Path) -> tuple[str, bool]:
    """The generated secret, and True when it was generated just now."""
    path = data_dir / SECRET_FILE
    if path.exists():
        return path.read_text().strip(), False
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret, True


def load_settings(
    *, create_secret: bool = True, warn: bool = True, **overrides: object
) -> Settings:
    """Read, check and complete the settings; raises ConfigError with a one-line message.

    create_secret=False: a missing development secret is left unset rather than generated
    into DATA_DIR (a check such as `doctor` leaves no file behind); warn=False: what this
    function would log is left to the caller, who reports it its own way."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_first_error(exc)) from None

    if settings.NEXTAUTH_SECRET:
        if len(settings.NEXTAUTH_SECRET.encode()) < MIN_SECRET_BYTES:
            if settings.production:
                raise ConfigError(
                    f"NEXTAUTH_SECRET must be at least {MIN_SECRET_BYTES} bytes in production "
                    f"({NEW_SECRET})"
                )
            if warn:
                log.warning("NEXTAUTH_SECRET is shorter than %d bytes (%s)", MIN_SECRET_BYTES,
                            NEW_SECRET)
    elif settings.production:
        raise ConfigError(f"NEXTAUTH_SECRET is required when APP_ENV=production ({NEW_SECRET})")
    elif create_secret:
        settings.NEXTAUTH_SECRET, created = _load_or_create_secret(Path(settings.DATA_DIR))
        # Said once, when the file is made; load_settings runs in every CLI command and in
        # every worker, so the steady state is a DEBUG line, not a warning at each start.
        log.log(
            logging.WARNING if created else logging.DEBUG,
            "NEXTAUTH_SECRET not set - %s %s",
            "generated a secret into" if created else "using the generated secret in",
            Path(settings.DATA_DIR) / SECRET_FILE,
        )
    if not settings.OBSERVABILITY_TOKEN:
        settings.OBSERVABILITY_TOKEN = read_token(settings.DATA_DIR)  # made by `serve`

    if warn and settings.CACHE_TTL_SECONDS != settings.SESSION_VALIDATION_INTERVAL_SECONDS:
        log.warning(
            "CACHE_TTL_SECONDS (%d) differs from SESSION_VALIDATION_INTERVAL_SECONDS (%d); "
            "using %d s for both",
            settings.CACHE_TTL_SECONDS,
            settings.SESSION_VALIDATION_INTERVAL_SECONDS,
            settings.cache_ttl,
        )
    return settings
