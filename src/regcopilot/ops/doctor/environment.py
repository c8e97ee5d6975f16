"""Doctor: the environment and settings as the app would read them."""

from __future__ import annotations

import os
from pathlib import Path

from regcopilot.local_token import token_path
from regcopilot.ops.doctor.report import OK, WARN, Facts, Problem, Result


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
        facts.settings = facts.parts.settings()
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


