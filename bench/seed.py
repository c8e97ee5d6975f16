"""The same users in both directories, and a session for each of them.

Sessions are minted directly instead of through the login routes, which are bcrypt-bound
(~250 ms each): ours are JWTs signed with the server's NEXTAUTH_SECRET by the app's own
SessionTokens; the peer's are opaque tokens written into Redis exactly as its RedisStrategy
writes them at login (key prefix + token → user id).
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import redis

from regcopilot.auth.passwords import hash_password
from regcopilot.auth.tokens import SessionTokens
from regcopilot.users.postgres import PostgresDirectory

PASSWORD = "bench-password-1"
TENANTS = 10


@dataclass(frozen=True)
class BenchUser:
    id: str
    email: str
    tenant: str


# Each user is a member of one of TENANTS team workspaces, current there (as the session says):
# the benchmark measures sessions in their workspace, not the one-off move into one.
TENANT_IDS = [str(uuid.UUID(int=i + 1)) for i in range(TENANTS)]


def make_users(n: int) -> list[BenchUser]:
    return [BenchUser(str(uuid.uuid4()), f"user{i:05d}@bench.example", TENANT_IDS[i % TENANTS])
            for i in range(n)]


async def seed_ours(url: str, users: list[BenchUser]) -> None:
    directory = PostgresDirectory(url)
    await directory.open()  # creates auth.users and its change triggers
    await directory.close()
    hashed = hash_password(PASSWORD)  # one hash for all: logins are not what we measure
    conn = await asyncpg.connect(url)
    try:
        await conn.executemany(
            "INSERT INTO auth.users (id, email, encrypted_password, raw_app_meta_data,"
            " raw_user_meta_data) VALUES ($1::uuid, $2, $3, $4::jsonb, '{}'::jsonb)",
            [(u.id, u.email, hashed, json.dumps({"tenant_id": u.tenant})) for u in users],
        )
        await _seed_workspaces(conn, users)
    finally:
        await conn.close()


async def _seed_workspaces(conn: asyncpg.Connection, users: list[BenchUser]) -> None:
    owners = {u.tenant: u.id for u in reversed(users)}
    await conn.executemany(
        "INSERT INTO copilot_core.tenants (id, name, slug, type, owner_id)"
        " VALUES ($1::uuid, $2, $3, 'team', $4::uuid)",
        [(t, f"Bench {i}", f"bench-{i}", owners[t]) for i, t in enumerate(TENANT_IDS)
         if t in owners],
    )
    await conn.executemany(
        "INSERT INTO copilot_core.tenant_memberships (tenant_id, user_id, role, status,"
        " joined_at) VALUES ($1::uuid, $2::uuid, 'member', 'active', now())",
        [(u.tenant, u.id) for u in users],
    )
    await conn.executemany(
        "INSERT INTO copilot_core.user_tenant_contexts (user_id, current_tenant_id)"
        " VALUES ($1::uuid, $2::uuid)",
        [(u.id, u.tenant) for u in users],
    )


async def seed_peer(url: str, users: list[BenchUser]) -> None:
    """Rows in the peer's own table (created by `peer_app.py init`), with the same ids."""
    hashed = hash_password(PASSWORD)
    conn = await asyncpg.connect(url)
    try:
        await conn.executemany(
            'INSERT INTO "user" (id, email, hashed_password, is_active, is_superuser,'
            " is_verified) VALUES ($1::uuid, $2, $3, true, false, true)",
            [(u.id, u.email, hashed) for u in users],
        )
    finally:
        await conn.close()


def mint_ours(secret: str, max_age: int, users: list[BenchUser]) -> list[str]:
    tokens = SessionTokens(secret, max_age)
    return [tokens.issue(sub=u.id, email=u.email, tenant=u.tenant, role=None)[0] for u in users]


def mint_peer(redis_url: str, prefix: str, users: list[BenchUser]) -> list[str]:
    out = []
    with redis.Redis.from_url(redis_url) as r:
        pipe = r.pipeline(transaction=False)
        for u in users:
            token = secrets.token_urlsafe()
            pipe.set(f"{prefix}{token}", u.id, ex=86_400)
            out.append(token)
        pipe.execute()
    return out


def write_tokens(path: Path, tokens: list[str]) -> Path:
    path.write_text("\n".join(tokens) + "\n")
    return path
