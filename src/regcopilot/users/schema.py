"""The Supabase-compatible user table and the triggers that announce changes to it.

Any change to a user's validity — from this app, the CLI, or plain SQL in a dashboard — is
announced by the database itself, so nobody has to remember to call our API.
Both append the change to a durable log with a sequence number: PostgreSQL also announces it
with NOTIFY ("<seq>:<user id>"), SQLite, which cannot, is polled. A process that missed
announcements replays the log from the last sequence it applied (users/changes.py).
"""

NOTIFY_CHANNEL = "regcopilot_user_changes"
# The same feed carries session revocations, as `session:<id>:<expiry, Unix s>`; anything
# else on it is a user id (a uuid never starts with "session:").
SESSION_EVENT = "session:"

# Our own auth.users, created only on a database that has none (users/recognise.py): on
# Supabase, GoTrue's table is used as it is.
POSTGRES_USERS_DDL = """
CREATE SCHEMA IF NOT EXISTS auth;
CREATE TABLE IF NOT EXISTS auth.users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text UNIQUE,
    encrypted_password text,
    raw_app_meta_data jsonb DEFAULT '{}'::jsonb,
    raw_user_meta_data jsonb DEFAULT '{}'::jsonb,
    banned_until timestamptz,
    deleted_at timestamptz,
    last_sign_in_at timestamptz,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);
"""

POSTGRES_DDL = f"""
-- The durable change log: every announcement is also a row, so a process that was not
-- listening (LISTEN connection cut, instance started later) can replay what it missed.
CREATE TABLE IF NOT EXISTS public.regcopilot_user_changes (
    seq bigserial PRIMARY KEY,
    user_id text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS regcopilot_user_changes_changed_at
    ON public.regcopilot_user_changes (changed_at);
-- Append to the log and announce "<seq>:<user id>" (delivered at commit). Callable by its
-- owner (this app) and the trigger below; nobody else is granted it.
CREATE OR REPLACE FUNCTION public.regcopilot_announce(uid text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
    n bigint;
BEGIN
    INSERT INTO public.regcopilot_user_changes (user_id) VALUES (uid) RETURNING seq INTO n;
    PERFORM pg_notify('{NOTIFY_CHANNEL}', n::text || ':' || uid);
END $$;
REVOKE ALL ON FUNCTION public.regcopilot_announce(text) FROM PUBLIC;
-- SECURITY DEFINER because whoever changes a user (Supabase Auth's own role, a dashboard
-- user) must get the change logged without being granted the log; it does nothing but that,
-- with a fixed search_path, and a trigger function cannot be called directly.
CREATE OR REPLACE FUNCTION public.regcopilot_user_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM public.regcopilot_announce(OLD.id::text);
    ELSE
        PERFORM public.regcopilot_announce(NEW.id::text);
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION public.regcopilot_user_changed() FROM PUBLIC;
DROP TRIGGER IF EXISTS regcopilot_user_changed ON auth.users;
CREATE TRIGGER regcopilot_user_changed
    AFTER UPDATE OF banned_until, deleted_at, raw_app_meta_data OR DELETE ON auth.users
    FOR EACH ROW EXECUTE FUNCTION public.regcopilot_user_changed();
-- A password change voids every session issued before it, whoever made the change (our CLI,
-- GoTrue's recovery flow, plain SQL): the time is kept per user and read with the account
-- (users/dialect.py SESSION), and the change is announced like any other.
CREATE TABLE IF NOT EXISTS public.regcopilot_password_changes (
    user_id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    changed_at timestamptz NOT NULL
);
-- SECURITY DEFINER for the reason given on regcopilot_user_changed above.
CREATE OR REPLACE FUNCTION public.regcopilot_password_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO public.regcopilot_password_changes (user_id, changed_at)
    VALUES (NEW.id, clock_timestamp())
    ON CONFLICT (user_id) DO UPDATE SET changed_at = EXCLUDED.changed_at;
    PERFORM public.regcopilot_announce(NEW.id::text);
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION public.regcopilot_password_changed() FROM PUBLIC;
DROP TRIGGER IF EXISTS regcopilot_password_changed ON auth.users;
CREATE TRIGGER regcopilot_password_changed
    AFTER UPDATE OF encrypted_password ON auth.users
    FOR EACH ROW WHEN (OLD.encrypted_password IS DISTINCT FROM NEW.encrypted_password)
    EXECUTE FUNCTION public.regcopilot_password_changed();
""" + f"""
CREATE TABLE IF NOT EXISTS public.regcopilot_sessions (
    id text PRIMARY KEY,
    user_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    last_seen_at timestamptz,
    user_agent text,
    address text,
    revoked_at timestamptz,
    revoked_reason text
);
CREATE INDEX IF NOT EXISTS regcopilot_sessions_user ON public.regcopilot_sessions (user_id);
CREATE INDEX IF NOT EXISTS regcopilot_sessions_expires
    ON public.regcopilot_sessions (expires_at);
-- A revocation is a change like any other: logged (replayed after a reconnect) and announced.
-- SECURITY DEFINER for the reason given on regcopilot_user_changed above.
CREATE OR REPLACE FUNCTION public.regcopilot_session_revoked() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF NEW.revoked_at IS NOT NULL AND (TG_OP = 'INSERT' OR OLD.revoked_at IS NULL) THEN
        PERFORM public.regcopilot_announce('{SESSION_EVENT}' || NEW.id || ':'
                                           || extract(epoch FROM NEW.expires_at)::bigint);
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION public.regcopilot_session_revoked() FROM PUBLIC;
DROP TRIGGER IF EXISTS regcopilot_session_revoked ON public.regcopilot_sessions;
CREATE TRIGGER regcopilot_session_revoked
    AFTER INSERT OR UPDATE OF revoked_at ON public.regcopilot_sessions
    FOR EACH ROW EXECUTE FUNCTION public.regcopilot_session_revoked();
"""

# Serialises schema set-up when several instances start at once.
POSTGRES_DDL_LOCK = 0x5245_4743_4F50  # "REGCOP"

SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS auth_users (
    id TEXT PRIMARY KEY,
    email TEXT UNIQUE,
    encrypted_password TEXT,
    raw_app_meta_data TEXT NOT NULL DEFAULT '{}',
    raw_user_meta_data TEXT NOT NULL DEFAULT '{}',
    banned_until TEXT,
    deleted_at TEXT,
    last_sign_in_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE IF NOT EXISTS auth_user_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    changed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TRIGGER IF NOT EXISTS auth_users_changed
    AFTER UPDATE OF banned_until, deleted_at, raw_app_meta_data ON auth_users
    BEGIN INSERT INTO auth_user_changes (user_id) VALUES (NEW.id); END;
CREATE TRIGGER IF NOT EXISTS auth_users_deleted
    AFTER DELETE ON auth_users
    BEGIN INSERT INTO auth_user_changes (user_id) VALUES (OLD.id); END;
CREATE TABLE IF NOT EXISTS auth_password_changes (
    user_id TEXT PRIMARY KEY,
    changed_at TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS auth_users_password_changed
    AFTER UPDATE OF encrypted_password ON auth_users
    WHEN OLD.encrypted_password IS NOT NEW.encrypted_password
    BEGIN
        INSERT OR REPLACE INTO auth_password_changes (user_id, changed_at)
        VALUES (NEW.id, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
        INSERT INTO auth_user_changes (user_id) VALUES (NEW.id);
    END;
CREATE TRIGGER IF NOT EXISTS auth_users_password_forgotten
    AFTER DELETE ON auth_users
    BEGIN DELETE FROM auth_password_changes WHERE user_id = OLD.id; END;
CREATE TABLE IF NOT EXISTS auth_sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    last_seen_at TEXT,
    user_agent TEXT,
    address TEXT,
    revoked_at TEXT,
    revoked_reason TEXT
);
CREATE INDEX IF NOT EXISTS auth_sessions_user ON auth_sessions (user_id);
CREATE INDEX IF NOT EXISTS auth_sessions_expires ON auth_sessions (expires_at);
CREATE TRIGGER IF NOT EXISTS auth_sessions_revoked_insert
    AFTER INSERT ON auth_sessions WHEN NEW.revoked_at IS NOT NULL
    BEGIN INSERT INTO auth_user_changes (user_id) VALUES (
        'session:' || NEW.id || ':' || CAST(strftime('%s', NEW.expires_at) AS INTEGER)); END;
CREATE TRIGGER IF NOT EXISTS auth_sessions_revoked
    AFTER UPDATE OF revoked_at ON auth_sessions
    WHEN NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL
    BEGIN INSERT INTO auth_user_changes (user_id) VALUES (
        'session:' || NEW.id || ':' || CAST(strftime('%s', NEW.expires_at) AS INTEGER)); END;
"""

# On Supabase (GoTrue's schema), sessions live in auth.sessions. A row deleted there — by our
# sign-out, GoTrue's logout or admin API, the upstream console, plain SQL — leaves nothing to
# refuse the session by, so the delete leaves a revoked record in public.regcopilot_sessions
# (whose trigger above logs and announces it) until the session would have expired. Only rows
# with a future `not_after` are ours to remember: GoTrue's own sessions have none.
# `regcopilot.end_reason` is set by our own deletes (users/gotrue_sessions.py); anyone
# else's delete is recorded as "ended".
GOTRUE_DDL = """
CREATE OR REPLACE FUNCTION public.regcopilot_gotrue_session_ended() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF OLD.not_after IS NOT NULL AND OLD.not_after > now() THEN
        INSERT INTO public.regcopilot_sessions (id, user_id, created_at, expires_at,
                                                user_agent, revoked_at, revoked_reason)
        VALUES (OLD.id::text, OLD.user_id, coalesce(OLD.created_at, now()), OLD.not_after,
                OLD.user_agent, now(),
                coalesce(nullif(current_setting('regcopilot.end_reason', true), ''), 'ended'))
        ON CONFLICT (id) DO UPDATE SET revoked_at = now(),
            revoked_reason = EXCLUDED.revoked_reason
        WHERE public.regcopilot_sessions.revoked_at IS NULL;
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION public.regcopilot_gotrue_session_ended() FROM PUBLIC;
DROP TRIGGER IF EXISTS regcopilot_session_ended ON auth.sessions;
CREATE TRIGGER regcopilot_session_ended
    AFTER DELETE ON auth.sessions
    FOR EACH ROW EXECUTE FUNCTION public.regcopilot_gotrue_session_ended();
"""
