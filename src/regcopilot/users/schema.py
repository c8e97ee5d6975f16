"""The Supabase-compatible user table and the triggers that announce changes to it.

Any change to a user's validity — from this app, the CLI, or plain SQL in a dashboard — is
announced by the database itself, so nobody has to remember to call our API.
Both append the change to a durable log with a sequence number: PostgreSQL also announces it
with NOTIFY ("<seq>:<user id>"), SQLite, which cannot, is polled. A process that missed
announcements replays the log from the last sequence it applied (users/changes.py).
"""

NOTIFY_CHANNEL = "regcopilot_user_changes"

POSTGRES_DDL = f"""
CREATE SCHEMA IF NOT EXISTS auth;
CREATE TABLE IF NOT EXISTS auth.users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text UNIQUE,
    encrypted_password text,
    raw_app_meta_data jsonb DEFAULT '{{}}'::jsonb,
    raw_user_meta_data jsonb DEFAULT '{{}}'::jsonb,
    banned_until timestamptz,
    deleted_at timestamptz,
    last_sign_in_at timestamptz,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now()
);
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
"""
