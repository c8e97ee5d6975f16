"""The upstream's workspace tables (copilot_core.tenants, tenant_memberships,
user_tenant_contexts) and the triggers that put their changes on the user change feed.

Only the columns a session needs are required; the names, types and CHECKs are the upstream's
(supabase/migrations/20260113000001_initial_schemas.sql), so a team's existing Supabase
database is used as is: every CREATE is IF NOT EXISTS, and only our triggers are (re)installed.

A change to a membership, a user's current workspace, or a workspace itself announces the
affected user ids on the same channel / change log as auth.users changes, so every instance
drops those users' cached validations within the feed's delay, whoever made the change.
"""


QUIET_SETTING = "regcopilot.quiet_context_write"
ROLES = ("owner", "admin", "member", "viewer")
STATUSES = ("pending", "active", "suspended", "removed")
TYPES = ("personal", "team", "enterprise")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# owner_id has no foreign key here (the upstream's is ON DELETE RESTRICT): with one, deleting a
# user from auth.users - our admin API's hard delete, plain SQL - would fail for every owner.
POSTGRES_DDL = f"""
CREATE SCHEMA IF NOT EXISTS copilot_core;
CREATE TABLE IF NOT EXISTS copilot_core.tenants (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    slug text UNIQUE,
    description text,
    type text NOT NULL DEFAULT 'personal',
    owner_id uuid NOT NULL,
    plan text NOT NULL DEFAULT 'free',
    settings jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    deleted_by uuid,
    CONSTRAINT tenants_plan_check CHECK (plan IN ('free', 'pro', 'enterprise')),
    CONSTRAINT tenants_type_check CHECK ({_in("type", TYPES)}),
    CONSTRAINT valid_settings CHECK (jsonb_typeof(settings) = 'object')
);
CREATE TABLE IF NOT EXISTS copilot_core.tenant_memberships (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL REFERENCES copilot_core.tenants(id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES auth.users(id) ON DELETE CASCADE,
    role text NOT NULL DEFAULT 'member',
    invited_by uuid,
    invited_at timestamptz NOT NULL DEFAULT now(),
    joined_at timestamptz,
    status text NOT NULL DEFAULT 'active',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT tenant_memberships_tenant_id_user_id_key UNIQUE (tenant_id, user_id),
    CONSTRAINT tenant_memberships_role_check CHECK ({_in("role", ROLES)}),
    CONSTRAINT tenant_memberships_status_check CHECK ({_in("status", STATUSES)})
);
CREATE TABLE IF NOT EXISTS copilot_core.user_tenant_contexts (
    user_id uuid PRIMARY KEY REFERENCES auth.users(id) ON DELETE CASCADE,
    current_tenant_id uuid REFERENCES copilot_core.tenants(id) ON DELETE SET NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_tenant_memberships_user
    ON copilot_core.tenant_memberships (user_id) WHERE status = 'active';
CREATE INDEX IF NOT EXISTS idx_tenants_owner
    ON copilot_core.tenants (owner_id) WHERE deleted_at IS NULL;

-- A membership or a current-workspace row names its user: announce that user (both, if an
-- UPDATE moved the row to another user).
-- Except in this app's transactions that set QUIET_SETTING (for that transaction only): the
-- record of an automatic switch, which stores what every instance already computes from the
-- other tables, and a first personal workspace, which no cached answer can depend on.
-- Announcing those would only make every instance drop and reload the answer.
-- Announced through the change log (public.regcopilot_announce, users/schema.py) like every
-- change the validation depends on; SECURITY DEFINER for the reason given there (whoever
-- changes a membership must get it logged without being granted the log).
CREATE OR REPLACE FUNCTION public.regcopilot_tenancy_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF current_setting('{QUIET_SETTING}', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM public.regcopilot_announce(OLD.user_id::text);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM public.regcopilot_announce(NEW.user_id::text);
    END IF;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION public.regcopilot_tenancy_changed() FROM PUBLIC;
DROP TRIGGER IF EXISTS regcopilot_tenancy_changed ON copilot_core.tenant_memberships;
CREATE TRIGGER regcopilot_tenancy_changed
    AFTER INSERT OR UPDATE OR DELETE ON copilot_core.tenant_memberships
    FOR EACH ROW EXECUTE FUNCTION public.regcopilot_tenancy_changed();
DROP TRIGGER IF EXISTS regcopilot_tenancy_changed ON copilot_core.user_tenant_contexts;
CREATE TRIGGER regcopilot_tenancy_changed
    AFTER INSERT OR UPDATE OR DELETE ON copilot_core.user_tenant_contexts
    FOR EACH ROW EXECUTE FUNCTION public.regcopilot_tenancy_changed();

-- A workspace renamed, soft-deleted or deleted: announce every member. SECURITY DEFINER
-- because this must see ALL members: on a Supabase database the row-level security of the
-- role making the change (e.g. `authenticated`) would otherwise hide members from it, and
-- those members would keep the deleted workspace. It reads one table, takes no arguments,
-- is a trigger function (not callable as a query) and is executable by nobody but its owner.
CREATE OR REPLACE FUNCTION public.regcopilot_tenant_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    member uuid;
BEGIN
    FOR member IN
        SELECT m.user_id FROM copilot_core.tenant_memberships m WHERE m.tenant_id = OLD.id
    LOOP
        PERFORM public.regcopilot_announce(member::text);
    END LOOP;
    RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION public.regcopilot_tenant_changed() FROM PUBLIC;
DROP TRIGGER IF EXISTS regcopilot_tenant_changed ON copilot_core.tenants;
CREATE TRIGGER regcopilot_tenant_changed
    AFTER UPDATE OF name, deleted_at OR DELETE ON copilot_core.tenants
    FOR EACH ROW EXECUTE FUNCTION public.regcopilot_tenant_changed();

-- Nobody calls these but the triggers: no EXECUTE for PUBLIC, nor for the roles Supabase's
-- default privileges grant every new function in `public` to (anon, authenticated).
REVOKE ALL ON FUNCTION public.regcopilot_user_changed() FROM PUBLIC;
DO $$
DECLARE
    grantee text;
BEGIN
    FOREACH grantee IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = grantee) THEN
            EXECUTE format('REVOKE ALL ON FUNCTION public.regcopilot_user_changed(),'
                           ' public.regcopilot_announce(text),'
                           ' public.regcopilot_session_revoked(),'
                           ' public.regcopilot_tenancy_changed(),'
                           ' public.regcopilot_tenant_changed() FROM %I', grantee);
        END IF;
    END LOOP;
END $$;
"""

_NOW = "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"

# SQLite has no schemas: the same tables, `copilot_core_` in front of their names.
SQLITE_DDL = f"""
CREATE TABLE IF NOT EXISTS copilot_core_tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    slug TEXT UNIQUE,
    description TEXT,
    type TEXT NOT NULL DEFAULT 'personal' CHECK ({_in("type", TYPES)}),
    owner_id TEXT NOT NULL,
    plan TEXT NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'enterprise')),
    settings TEXT NOT NULL DEFAULT '{{}}',
    created_at TEXT NOT NULL DEFAULT {_NOW},
    updated_at TEXT NOT NULL DEFAULT {_NOW},
    deleted_at TEXT,
    deleted_by TEXT
);
CREATE TABLE IF NOT EXISTS copilot_core_tenant_memberships (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES copilot_core_tenants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES auth_users(id) ON DELETE CASCADE,
    role TEXT NOT NULL DEFAULT 'member' CHECK ({_in("role", ROLES)}),
    invited_by TEXT,
    invited_at TEXT NOT NULL DEFAULT {_NOW},
    joined_at TEXT,
    status TEXT NOT NULL DEFAULT 'active' CHECK ({_in("status", STATUSES)}),
    created_at TEXT NOT NULL DEFAULT {_NOW},
    updated_at TEXT NOT NULL DEFAULT {_NOW},
    deleted_at TEXT,
    UNIQUE (tenant_id, user_id)
);
CREATE TABLE IF NOT EXISTS copilot_core_user_tenant_contexts (
    user_id TEXT PRIMARY KEY REFERENCES auth_users(id) ON DELETE CASCADE,
    current_tenant_id TEXT REFERENCES copilot_core_tenants(id) ON DELETE SET NULL,
    updated_at TEXT NOT NULL DEFAULT {_NOW}
);
CREATE INDEX IF NOT EXISTS idx_tenant_memberships_user
    ON copilot_core_tenant_memberships (user_id) WHERE status = 'active';
CREATE TRIGGER IF NOT EXISTS copilot_core_memberships_inserted
    AFTER INSERT ON copilot_core_tenant_memberships
    BEGIN INSERT INTO auth_user_changes (user_id) VALUES (NEW.user_id); END;
CREATE TRIGGER IF NOT EXISTS copilot_core_memberships_updated
    AFTER UPDATE ON copilot_core_tenant_memberships
    BEGIN
        INSERT INTO auth_user_changes (user_id) VALUES (OLD.user_id);
        INSERT INTO auth_user_changes (user_id)
            SELECT NEW.user_id WHERE NEW.user_id IS NOT OLD.user_id;
    END;
CREATE TRIGGER IF NOT EXISTS copilot_core_memberships_deleted
    AFTER DELETE ON copilot_core_tenant_memberships
    BEGIN INSERT INTO auth_user_changes (user_id) VALUES (OLD.user_id); END;
CREATE TRIGGER IF NOT EXISTS copilot_core_contexts_inserted
    AFTER INSERT ON copilot_core_user_tenant_contexts
    BEGIN INSERT INTO auth_user_changes (user_id) VALUES (NEW.user_id); END;
CREATE TRIGGER IF NOT EXISTS copilot_core_contexts_updated
    AFTER UPDATE ON copilot_core_user_tenant_contexts
    BEGIN INSERT INTO auth_user_changes (user_id) VALUES (NEW.user_id); END;
CREATE TRIGGER IF NOT EXISTS copilot_core_tenants_changed
    AFTER UPDATE OF name, deleted_at ON copilot_core_tenants
    BEGIN
        INSERT INTO auth_user_changes (user_id)
            SELECT user_id FROM copilot_core_tenant_memberships WHERE tenant_id = OLD.id;
    END;
CREATE TRIGGER IF NOT EXISTS copilot_core_tenants_deleted
    BEFORE DELETE ON copilot_core_tenants
    BEGIN
        INSERT INTO auth_user_changes (user_id)
            SELECT user_id FROM copilot_core_tenant_memberships WHERE tenant_id = OLD.id;
    END;
"""
