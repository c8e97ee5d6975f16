"""What differs between the two `auth` schemas a PostgreSQL directory can run on, as one class
each, picked once when the directory opens (users/recognise.py): how a user is found for a
password sign-in, how one is created, which table holds the sessions, where sign-ins are
audited. Everything else (validation, bans, the change log) reads the columns both share.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from regcopilot.names import AuthSchema
from regcopilot.users.directory import UNCONFIRMED_NEEDS_GOTRUE
from regcopilot.users.rows import COLUMNS
from regcopilot.users.schema import GOTRUE_DDL, POSTGRES_DDL, POSTGRES_USERS_DDL

# GoTrue's single-tenant instance id (uuid.Nil): what its admin API writes and filters by.
ZERO_INSTANCE = "00000000-0000-0000-0000-000000000000"
# GoTrue's default audience and role for its users (Supabase sets the role to it too).
AUTHENTICATED = "authenticated"


class OwnTables:
    """The tables this app creates on an empty database."""

    schema = AuthSchema.OWN
    ddl = POSTGRES_USERS_DDL + POSTGRES_DDL
    set_password = ("UPDATE auth.users SET encrypted_password = $1, updated_at = now()"
                    " WHERE id = $2")
    # Every user here is an email user of the default audience, confirmed when created.
    find_by_email = (
        f"SELECT {COLUMNS}, 'authenticated', coalesce(created_at, now()), false, false"
        " FROM auth.users WHERE email = $1"
    )

    async def insert(self, conn: Any, email: str, password_hash: str, app_meta: dict,
                     user_meta: dict, confirmed: bool) -> Any:
        if not confirmed:
            raise ValueError(UNCONFIRMED_NEEDS_GOTRUE)
        return await conn.fetchrow(
            "INSERT INTO auth.users (email, encrypted_password, raw_app_meta_data,"
            f" raw_user_meta_data) VALUES ($1, $2, $3::jsonb, $4::jsonb) RETURNING {COLUMNS}",
            email, password_hash, json.dumps(app_meta), json.dumps(user_meta),
        )


class GoTrueTables:
    """Supabase Auth's own schema, written the way GoTrue writes it."""

    schema = AuthSchema.GOTRUE
    ddl = POSTGRES_DDL + GOTRUE_DDL
    # GoTrue's UpdatePassword: the links and codes sent before (recovery, confirmation, email
    # or phone change, reauthentication) stop working with the old password.
    set_password = (
        "UPDATE auth.users SET encrypted_password = $1, updated_at = now(),"
        " confirmation_token = '', confirmation_sent_at = NULL, recovery_token = '',"
        " recovery_sent_at = NULL, email_change_token_current = '',"
        " email_change_token_new = '', email_change_sent_at = NULL, phone_change_token = '',"
        " phone_change_sent_at = NULL, reauthentication_token = '',"
        " reauthentication_sent_at = NULL WHERE id = $2"
    )
    # GoTrue's FindUserByEmailAndAudience: SSO users may share an email with the one email
    # user (its unique index covers is_sso_user = false only) and never sign in by password.
    # The audience is judged after the read (users/gotrue_rules.py), so a row of another
    # audience is refused like a wrong password rather than unseen.
    find_by_email = (
        f"SELECT {COLUMNS}, aud, email_confirmed_at, is_sso_user, is_anonymous"
        " FROM auth.users WHERE email = $1 AND is_sso_user = false"
    )

    async def insert(self, conn: Any, email: str, password_hash: str, app_meta: dict,
                     user_meta: dict, confirmed: bool) -> Any:
        """As GoTrue's admin API creates an email user (POST /admin/users): the user row and
        its `email` identity in one statement. Confirming (email_confirm) stamps
        email_confirmed_at and sets email_verified in the user metadata, as its Confirm does;
        the identity's own email_verified stays false, as NewIdentity leaves it. GoTrue reads
        its token columns into plain strings: a NULL there would break GoTrue's own reads of
        the user, so they are written empty, as it writes them."""
        user_id = str(uuid.uuid4())
        if confirmed:
            user_meta = {**user_meta, "email_verified": True}
        identity = {"sub": user_id, "email": email, "email_verified": False,
                    "phone_verified": False}
        return await conn.fetchrow(
            f"""WITH u AS (
                INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password,
                    email_confirmed_at, raw_app_meta_data, raw_user_meta_data,
                    created_at, updated_at, is_sso_user, is_anonymous,
                    confirmation_token, recovery_token, email_change_token_new, email_change)
                VALUES ('{ZERO_INSTANCE}', $1, '{AUTHENTICATED}', '{AUTHENTICATED}', $2, $3,
                    CASE WHEN $4 THEN now() END, $5::jsonb, $6::jsonb, now(), now(),
                    false, false, '', '', '', '')
                RETURNING {COLUMNS}
            ), identity AS (
                INSERT INTO auth.identities (provider_id, user_id, identity_data, provider,
                    last_sign_in_at, created_at, updated_at)
                SELECT u.id::text, u.id, $7::jsonb, 'email', now(), now(), now() FROM u
            )
            SELECT * FROM u""",
            user_id, email, password_hash, confirmed, json.dumps(app_meta),
            json.dumps(user_meta), json.dumps(identity),
        )


AuthTables = OwnTables | GoTrueTables
TABLES: dict[AuthSchema, type[OwnTables] | type[GoTrueTables]] = {
    AuthSchema.OWN: OwnTables,
    AuthSchema.GOTRUE: GoTrueTables,
}
