"""Turning stored rows into `User`s; the only place that knows the column order."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

COLUMNS = (
    "id, email, encrypted_password, raw_app_meta_data, raw_user_meta_data, "
    "banned_until, deleted_at, last_sign_in_at, created_at"
)


def as_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def as_meta(value: Any) -> dict:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    try:
        loaded = json.loads(value)
    except (TypeError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def to_user(row: Any) -> Any:
    from regcopilot.users.directory import User

    return User(
        id=str(row[0]),
        email=row[1] or "",
        password_hash=row[2],
        app_meta=as_meta(row[3]),
        user_meta=as_meta(row[4]),
        banned_until=as_datetime(row[5]),
        deleted_at=as_datetime(row[6]),
        last_sign_in_at=as_datetime(row[7]),
        created_at=as_datetime(row[8]),
    )


def to_sign_in_user(row: Any) -> Any:
    """A row of COLUMNS followed by the sign-in columns (aud, email_confirmed_at,
    is_sso_user, is_anonymous): what the password sign-in judges."""
    from dataclasses import replace

    return replace(
        to_user(row), aud=row[9], email_confirmed_at=as_datetime(row[10]),
        is_sso_user=bool(row[11]), is_anonymous=bool(row[12]),
    )


def new_meta(admin: bool, tenant_id: str | None, full_name: str | None) -> tuple[dict, dict]:
    app_meta: dict[str, Any] = {"provider": "email", "providers": ["email"]}
    if admin:
        app_meta["role"] = "admin"
    if tenant_id:
        app_meta["tenant_id"] = tenant_id
    user_meta = {"full_name": full_name} if full_name else {}
    return app_meta, user_meta
