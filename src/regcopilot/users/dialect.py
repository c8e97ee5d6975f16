"""One SQL text for both directories, rendered once per backend: `{tenants}`-style table
names, `{now}`, `{uuid}`, and `{p}` for each parameter — `$1`, `$2`, … for PostgreSQL, `?` for
SQLite. str.format fills them, so a `?` in a literal or PostgreSQL's jsonb `?` operator is left
alone (the regex this replaces rewrote every `?`)."""

from __future__ import annotations

import functools
import string
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from regcopilot.users.directory import CurrentWorkspace
from regcopilot.users.rows import COLUMNS, to_user

NAMES = {
    "postgres": {
        "users": "auth.users",
        "tenants": "copilot_core.tenants",
        "members": "copilot_core.tenant_memberships",
        "contexts": "copilot_core.user_tenant_contexts",
        "now": "now()",
        "uuid": "uuid",
    },
    "sqlite": {
        "users": "auth_users",
        "tenants": "copilot_core_tenants",
        "members": "copilot_core_tenant_memberships",
        "contexts": "copilot_core_user_tenant_contexts",
        "now": "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        "uuid": "text",
    },
}


class _Dialect(string.Formatter):
    """Names from the backend's table; `{p}` the next placeholder, numbered from 1."""

    def __init__(self, kind: str) -> None:
        self.names = NAMES[kind]
        self.numbered = kind == "postgres"

    def render(self, template: str) -> str:
        return self.vformat(template, (), _Counter(self.names, self.numbered))


class _Counter(Mapping[str, Any]):
    def __init__(self, names: Mapping[str, str], numbered: bool) -> None:
        self.names, self.numbered, self.count = names, numbered, 0

    def __getitem__(self, key: str) -> str:
        if key != "p":
            return self.names[key]
        self.count += 1
        return f"${self.count}" if self.numbered else "?"

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


@functools.cache
def render(kind: str, template: str) -> str:
    return _Dialect(kind).render(template)


# Where a session is, decided in the same statement as the account: the stored current
# workspace while that membership is active, else the user's own personal one, else the
# earliest joined. The last column is what user_tenant_contexts holds, so the caller can tell
# a lost workspace from a kept one. Correlated scalar subqueries: SQLite has no
# LATERAL (nor correlation inside a JOIN's ON); PostgreSQL plans each as an index lookup.
SESSION = (
    "SELECT " + ", ".join(f"x.{c.strip()}" for c in COLUMNS.split(",")) + """,
       t.id, t.name, m.role, x.stored
FROM (
    SELECT u.*,
        (SELECT c.current_tenant_id FROM {contexts} c WHERE c.user_id = u.id) AS stored,
        (SELECT m2.id FROM {members} m2
         JOIN {tenants} t2 ON t2.id = m2.tenant_id
         WHERE m2.user_id = u.id AND m2.status = 'active' AND m2.deleted_at IS NULL
           AND t2.deleted_at IS NULL
         ORDER BY CASE WHEN m2.tenant_id = (SELECT c2.current_tenant_id FROM {contexts} c2
                                            WHERE c2.user_id = m2.user_id) THEN 0
                       WHEN t2.type = 'personal' AND t2.owner_id = m2.user_id THEN 1
                       ELSE 2 END,
                  m2.joined_at, m2.tenant_id
         LIMIT 1) AS pick
    FROM {users} u WHERE u.id = {p}
) x
LEFT JOIN {members} m ON m.id = x.pick
LEFT JOIN {tenants} t ON t.id = m.tenant_id"""
)
SESSION_WIDTH = len(COLUMNS.split(",")) + 4

ACTIVE = "m.status = 'active' AND m.deleted_at IS NULL AND t.deleted_at IS NULL"


def split_session(row: Sequence[Any]) -> tuple[Any, CurrentWorkspace]:
    """A SESSION row → (User, CurrentWorkspace)."""
    width = SESSION_WIDTH - 4
    tenant, name, role, stored = (row[i] for i in range(width, SESSION_WIDTH))
    return to_user(row), CurrentWorkspace(
        tenant_id=str(tenant) if tenant is not None else None,
        name=name,
        role=role,
        stored_id=str(stored) if stored is not None else None,
    )
