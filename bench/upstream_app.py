"""Variant (3b): the upstream tier's design as its own tiny app, so it is measured on the same
server, core and flags as ours: on every request decode the session JWT (PyJWT HS256), GET
`<prefix>validation:<id>` from Redis and `json.loads` it; on a miss ask PostgreSQL (asyncpg)
and `SET … EX 300` the answer, as the upstream's distributed validation cache does.

    UPSTREAM_DATABASE_URL=… UPSTREAM_REDIS_URL=… NEXTAUTH_SECRET=… \
        uvicorn bench.upstream_app:app --no-access-log --proxy-headers
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import jwt
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

SECRET = os.environ["NEXTAUTH_SECRET"]
DATABASE_URL = os.environ["UPSTREAM_DATABASE_URL"]
REDIS_URL = os.environ["UPSTREAM_REDIS_URL"]
PREFIX = os.environ.get("UPSTREAM_KEY_PREFIX", "copilot:auth:")
COOKIE = os.environ.get("UPSTREAM_COOKIE", "regcopilot.session-token")
TTL_SECONDS = 300
USER_SQL = (
    "SELECT id, email, raw_app_meta_data, banned_until, deleted_at FROM auth.users WHERE id = $1"
)

state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    state["redis"] = aioredis.from_url(REDIS_URL, decode_responses=True)
    state["pool"] = await asyncpg.create_pool(DATABASE_URL, min_size=1, max_size=10)
    try:
        yield
    finally:
        await state["pool"].close()
        await state["redis"].aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/api/health")
async def health() -> dict:
    return {"status": "ok"}


async def _validate(user_id: str) -> dict[str, Any]:
    key = f"{PREFIX}validation:{user_id}"
    raw = await state["redis"].get(key)
    if raw is not None:
        return json.loads(raw)
    row = await state["pool"].fetchrow(USER_SQL, user_id)
    valid = row is not None and row["deleted_at"] is None and (
        row["banned_until"] is None or row["banned_until"].timestamp() < time.time()
    )
    meta = json.loads(row["raw_app_meta_data"] or "{}") if row is not None else {}
    entry = {"isValid": valid, "timestamp": int(time.time() * 1000),
             "tenantId": meta.get("tenant_id")}
    await state["redis"].set(key, json.dumps(entry), ex=TTL_SECONDS)
    return entry


@app.get("/api/me")
async def me(request: Request) -> JSONResponse:
    token = request.cookies.get(COOKIE)
    if not token:
        return JSONResponse({"error": "not signed in"}, status_code=401)
    try:
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    except jwt.PyJWTError:
        return JSONResponse({"error": "invalid session"}, status_code=401)
    entry = await _validate(claims["sub"])
    if not entry.get("isValid"):
        return JSONResponse({"error": "account invalid"}, status_code=401)
    return JSONResponse({"id": claims["sub"], "email": claims.get("email"),
                         "tenantId": entry.get("tenantId")})
