"""Supabase Auth's real schema (GoTrue's migrations, as its migrator leaves them) for tests:
where the shared file is, loading it into a fresh database, and rows inserted the way GoTrue
inserts them."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support import repo_root

SCHEMA_FILE = Path("shared/supabase/gotrue-auth-schema.sql")
ZERO_INSTANCE = "00000000-0000-0000-0000-000000000000"


def _main_checkout(root: Path) -> Path:
    """A git worktree's main checkout (its `.git` is a file naming the common dir); the
    checkout itself otherwise."""
    dot_git = root / ".git"
    if not dot_git.is_file():
        return root
    gitdir = Path(dot_git.read_text().split("gitdir:", 1)[1].strip())
    common = gitdir / "commondir"
    base = (gitdir / common.read_text().strip()).resolve() if common.exists() else gitdir
    return base.parent


def schema_path() -> Path | None:
    """`<repo>/../shared/supabase/gotrue-auth-schema.sql` (CI has the clone beside shared/);
    from a git worktree, beside its main checkout."""
    root = repo_root()
    for base in dict.fromkeys((root, _main_checkout(root))):
        candidate = base.parent / SCHEMA_FILE
        if candidate.is_file():
            return candidate
    return None


def schema_or_skip() -> Path:
    found = schema_path()
    if found is not None:
        return found
    where = repo_root().parent / SCHEMA_FILE
    message = (f"GoTrue's schema not found at {where} (../{SCHEMA_FILE} beside the clone): "
               "the Supabase Auth tests need it")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)  # CI always has ../shared: a missing file is a broken set-up
    pytest.skip(message)


def schema_sql(path: Path) -> str:
    # psql's own meta-commands (\restrict in pg_dump >= 15.14) are not SQL.
    return "\n".join(line for line in path.read_text().splitlines()
                     if not line.startswith("\\"))


async def insert_user(conn: Any, email: str | None, password_hash: str | None, *,
                      confirmed: bool = True, sso: bool = False, anonymous: bool = False,
                      aud: str = "authenticated") -> str:
    """A user row as GoTrue writes one (its signup / admin API / SSO / anonymous sign-in),
    with the identity it writes alongside."""
    user_id = str(uuid.uuid4())
    provider = "sso:" + str(uuid.uuid4()) if sso else "email"
    app_meta = {"provider": provider, "providers": [provider]} if not anonymous else {}
    await conn.execute(
        "INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password,"
        " email_confirmed_at, raw_app_meta_data, raw_user_meta_data, created_at, updated_at,"
        " is_sso_user, is_anonymous, confirmation_token, recovery_token,"
        " email_change_token_new, email_change)"
        " VALUES ($1, $2, $3, 'authenticated', $4, $5, CASE WHEN $6 THEN now() END,"
        " $7::jsonb, '{}'::jsonb, now(), now(), $8, $9, '', '', '', '')",
        ZERO_INSTANCE, user_id, aud, email, password_hash or "", confirmed,
        json.dumps(app_meta), sso, anonymous,
    )
    if email is not None:
        data = {"sub": user_id, "email": email, "email_verified": False,
                "phone_verified": False}
        await conn.execute(
            "INSERT INTO auth.identities (provider_id, user_id, identity_data, provider,"
            " last_sign_in_at, created_at, updated_at) VALUES ($1, $2, $3::jsonb, $4, now(),"
            " now(), now())",
            user_id, user_id, json.dumps(data), provider,
        )
    return user_id
