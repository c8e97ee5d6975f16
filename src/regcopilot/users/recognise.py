"""Which `auth` schema a PostgreSQL database holds, read once at start: Supabase Auth's
(GoTrue's migrations), this app's own, or none yet (then ours is created).

Anything else stops the start with one line naming what is missing: running on a half-known
table would fail later, one request at a time, as 500s.
"""

from __future__ import annotations

from typing import Any

from regcopilot.names import AuthSchema

# What this tier reads and writes in GoTrue's schema (the columns of its current migrations).
GOTRUE_NEEDS: dict[str, frozenset[str]] = {
    "users": frozenset({
        "instance_id", "id", "aud", "role", "email", "encrypted_password",
        "email_confirmed_at", "raw_app_meta_data", "raw_user_meta_data", "banned_until",
        "deleted_at", "is_sso_user", "is_anonymous", "last_sign_in_at", "created_at",
        "updated_at",
        # written empty at creation and cleared by a password change, as GoTrue does
        "confirmation_token", "confirmation_sent_at", "recovery_token", "recovery_sent_at",
        "email_change_token_current", "email_change_token_new", "email_change",
        "email_change_sent_at",
        "phone_change_token", "phone_change_sent_at", "reauthentication_token",
        "reauthentication_sent_at",
    }),
    "identities": frozenset({
        "provider_id", "user_id", "identity_data", "provider", "last_sign_in_at",
        "created_at", "updated_at",
    }),
    "sessions": frozenset({
        "id", "user_id", "created_at", "updated_at", "aal", "not_after", "refreshed_at",
        "user_agent", "ip",
    }),
    "audit_log_entries": frozenset({"instance_id", "id", "payload", "created_at",
                                    "ip_address"}),
}
OWN_NEEDS = frozenset({
    "id", "email", "encrypted_password", "raw_app_meta_data", "raw_user_meta_data",
    "banned_until", "deleted_at", "last_sign_in_at", "created_at", "updated_at",
})
# Columns only GoTrue's auth.users has: their presence says whose table it is.
GOTRUE_MARKS = frozenset({"aud", "instance_id", "is_sso_user"})

COLUMNS_SQL = """
SELECT c.relname, a.attname
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'auth' AND c.relname = ANY($1::text[]) AND c.relkind IN ('r', 'p')
  AND a.attnum > 0 AND NOT a.attisdropped
"""


class SchemaMismatch(Exception):
    """auth.users is there but is neither schema this tier knows: what is missing, in words."""


def decide(found: dict[str, set[str]]) -> AuthSchema | None:
    """The schema these `auth` tables (table → columns) make up; None when there is no
    auth.users yet. Raises SchemaMismatch for anything else."""
    users = found.get("users")
    if users is None:
        return None
    if users & GOTRUE_MARKS or "identities" in found:
        missing: list[str] = []
        for table, columns in GOTRUE_NEEDS.items():
            if table not in found:
                missing.append(f"auth.{table}")
            else:
                missing += [f"auth.{table}.{c}" for c in sorted(columns - found[table])]
        if missing:
            raise SchemaMismatch(
                "auth.users looks like Supabase Auth's (GoTrue's) but its schema lacks "
                + ", ".join(missing) + " — run Supabase Auth's migrations (a current GoTrue "
                "adds them)"
            )
        return AuthSchema.GOTRUE
    missing_own = sorted(OWN_NEEDS - users)
    if missing_own:
        raise SchemaMismatch(
            "auth.users is neither Supabase Auth's (no aud/instance_id columns, no "
            "auth.identities) nor regcopilot's: it lacks column(s) " + ", ".join(missing_own)
        )
    return AuthSchema.OWN


async def recognise(conn: Any) -> AuthSchema | None:
    rows = await conn.fetch(COLUMNS_SQL, list(GOTRUE_NEEDS))
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(table, set()).add(column)
    return decide(found)


def describe(schema: AuthSchema, kind: str) -> str:
    """One line for the start log and `doctor`: whose tables, and what this tier writes where."""
    if schema is AuthSchema.GOTRUE:
        return ("Supabase Auth's schema (GoTrue's): users in auth.users, sessions in "
                "auth.sessions, sign-ins and sign-outs in auth.audit_log_entries")
    if kind == "sqlite":
        return "regcopilot's own schema (SQLite): users in auth_users, sessions in auth_sessions"
    return ("regcopilot's own schema: users in auth.users, sessions in "
            "public.regcopilot_sessions")
