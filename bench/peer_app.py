"""The peer we measure against: fastapi-users 15 as its documentation sets it up — a cookie
transport, the Redis token strategy (token → user id in Redis) and the user read through
SQLAlchemy (asyncpg) on every authenticated request.

Runs only in bench/.venv-peer (bench/setup-peer), never in the project's environment:
    python bench/peer_app.py init      create the user table
    uvicorn peer_app:app --app-dir bench   serve it (PEER_DATABASE_URL, PEER_REDIS_URL)
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin
from fastapi_users.authentication import AuthenticationBackend, CookieTransport, RedisStrategy
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

DATABASE_URL = os.environ.get("PEER_DATABASE_URL", "postgresql://postgres@127.0.0.1/postgres")
REDIS_URL = os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0")
TOKEN_PREFIX = os.environ.get("PEER_TOKEN_PREFIX", "fastapi_users_token:")
COOKIE_NAME = "fastapiusersauth"
SECRET = os.environ.get("PEER_SECRET", "peer-bench-secret-" + "x" * 32)


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


# The same number of database connections as our server's pool (DATABASE_POOL_SIZE=10).
# SQLAlchemy's default (5 + 10 overflow) closes and reopens overflow connections under load,
# which would charge the peer for connection set-up rather than for its design.
engine = create_async_engine(
    DATABASE_URL.replace("postgresql://", "postgresql+asyncpg://", 1),
    pool_size=int(os.environ.get("PEER_POOL_SIZE", "10")),
    max_overflow=int(os.environ.get("PEER_MAX_OVERFLOW", "0")),
)
session_maker = async_sessionmaker(engine, expire_on_commit=False)
redis_client = aioredis.from_url(REDIS_URL, decode_responses=True)


async def get_session() -> AsyncIterator[AsyncSession]:
    async with session_maker() as session:
        yield session


async def get_user_db(session: AsyncSession = Depends(get_session)) -> AsyncIterator[object]:
    yield SQLAlchemyUserDatabase(session, User)


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = SECRET
    verification_token_secret = SECRET


async def get_user_manager(user_db: object = Depends(get_user_db)) -> AsyncIterator[UserManager]:
    yield UserManager(user_db)  # type: ignore[arg-type]


def get_redis_strategy() -> RedisStrategy[User, uuid.UUID]:
    return RedisStrategy(redis_client, lifetime_seconds=86_400, key_prefix=TOKEN_PREFIX)


backend = AuthenticationBackend(
    name="redis-cookie",
    transport=CookieTransport(cookie_name=COOKIE_NAME, cookie_secure=False),
    get_strategy=get_redis_strategy,
)
users = FastAPIUsers[User, uuid.UUID](get_user_manager, [backend])
current_active_user = users.current_user(active=True)

app = FastAPI(title="fastapi-users peer")
app.include_router(users.get_auth_router(backend), prefix="/api/auth")


@app.get("/api/health")
async def health() -> dict:
    return {"status": "ok"}


@app.get("/api/me")
async def me(user: User = Depends(current_active_user)) -> dict:
    return {"id": str(user.id), "email": user.email}


async def init() -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()


if __name__ == "__main__":
    if sys.argv[1:] == ["init"]:
        asyncio.run(init())
    else:
        sys.exit("usage: peer_app.py init")
