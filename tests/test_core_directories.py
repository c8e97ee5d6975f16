"""The same behaviour, asked of both user directories (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from regcopilot.users.backends import open_directory
from regcopilot.users.changes import Change, FeedCursor
from regcopilot.users.directory import FOREVER, judge
from tests.support import eventually, hash_password, verify_password

HASH = hash_password("correct horse battery")


@pytest.fixture(params=["sqlite", "postgres"])
async def directory(request, tmp_path, pg_url, pg_clean):
    url = f"sqlite:///{tmp_path}/dir.db" if request.param == "sqlite" else pg_url
    d = open_directory(url, timeout=5)
    await d.open()
    try:
        yield d
    finally:
        await d.close()


async def test_add_find_get(directory):
    user = await directory.add("Alice@Example.com", HASH, tenant_id="acme", full_name="Alice A")
    assert uuid.UUID(user.id)
    assert user.email == "alice@example.com"
    assert user.tenant_id("default") == "acme" and user.full_name == "Alice A"
    assert user.role is None and not user.is_admin
    assert user.banned_until is None and user.deleted_at is None
    assert user.created_at is not None and user.created_at.tzinfo is not None
    assert verify_password("correct horse battery", user.password_hash)

    found = await directory.find_by_email("  ALICE@example.COM ")
    assert found is not None and found.id == user.id
    assert (await directory.get(user.id)) == found
    assert await directory.find_by_email("bob@example.com") is None
    assert await directory.get(str(uuid.uuid4())) is None
    assert await directory.get("not-a-uuid") is None

    admin = await directory.add("root@example.com", HASH, admin=True)
    assert admin.is_admin and admin.tenant_id("default") == "default"
    assert judge(admin, "default").valid


async def test_duplicate_email_is_a_value_error(directory):
    await directory.add("alice@example.com", HASH)
    with pytest.raises(ValueError, match=r"alice@example\.com"):
        await directory.add("ALICE@example.com", HASH)
    assert await directory.count() == 1
    # The directory is still writable afterwards (no transaction left holding a lock).
    await directory.add("bob@example.com", HASH)
    assert await directory.count() == 2


async def test_ban_and_unban(directory):
    user = await directory.add("alice@example.com", HASH)
    until = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=123000)
    assert await directory.set_banned_until(user.id, until) is True
    banned = await directory.get(user.id)
    assert banned.banned_until == until
    verdict = judge(banned, "default")
    assert not verdict.valid and verdict.reason == "banned" and verdict.banned_until == until
    # An expired ban lets the user back in.
    assert judge(banned, "default", now=until + timedelta(seconds=1)).valid

    assert await directory.set_banned_until(user.id, FOREVER) is True
    assert (await directory.get(user.id)).banned_until == FOREVER

    assert await directory.set_banned_until(user.id, None) is True
    assert judge(await directory.get(user.id), "default").valid
    assert await directory.set_banned_until(str(uuid.uuid4()), until) is False
    assert await directory.set_banned_until("not-a-uuid", until) is False


async def test_soft_and_hard_delete(directory):
    alice = await directory.add("alice@example.com", HASH)
    bob = await directory.add("bob@example.com", HASH)
    assert await directory.delete(alice.id, soft=True) is True
    soft = await directory.get(alice.id)
    assert soft is not None and soft.deleted_at is not None
    assert judge(soft, "default").reason == "deleted"

    assert await directory.delete(bob.id) is True
    assert await directory.get(bob.id) is None
    assert judge(None, "default").reason == "not_found"
    assert await directory.delete(bob.id) is False
    assert await directory.delete(str(uuid.uuid4()), soft=True) is False
    assert await directory.delete("not-a-uuid") is False


async def test_list_count_and_sign_in(directory):
    assert await directory.count() == 0 and await directory.list() == []
    emails = [f"user{i}@example.com" for i in range(5)]
    for e in emails:
        await directory.add(e, HASH)
    assert await directory.count() == 5
    listed = await directory.list()
    assert sorted(u.email for u in listed) == sorted(emails)
    assert len(await directory.list(limit=2)) == 2

    user = listed[0]
    assert user.last_sign_in_at is None
    await directory.record_sign_in(user.id)
    signed = await directory.get(user.id)
    assert signed.last_sign_in_at is not None
    assert abs(signed.last_sign_in_at - datetime.now(UTC)) < timedelta(minutes=1)
    await directory.ping()


async def test_changes_are_announced(directory):
    user = await directory.add("alice@example.com", HASH)
    other = await directory.add("bob@example.com", HASH)
    changes: list[Change] = []
    states: list[bool] = []
    cursor = FeedCursor((await directory.read_log()).head)
    task = asyncio.create_task(directory.watch(cursor, changes.append, states.append))

    class Seen:
        def __contains__(self, user_id: str) -> bool:
            return any(c.user_id == user_id for c in changes)

        def count(self, user_id: str) -> int:
            return sum(c.user_id == user_id for c in changes)

    seen = Seen()
    try:
        await eventually(lambda: states and states[-1], timeout=5)
        await directory.set_banned_until(user.id, FOREVER)
        await eventually(lambda: user.id in seen, timeout=5)
        await directory.record_sign_in(other.id)  # not a validity change: may stay silent
        await directory.delete(other.id)
        await eventually(lambda: other.id in seen, timeout=5)
        await directory.announce(user.id)
        await eventually(lambda: seen.count(user.id) >= 2, timeout=5)
        # Numbered in the log's order, each once, and the cursor has applied them all.
        seqs = [c.seq for c in changes]
        assert seqs == sorted(set(seqs))
        assert cursor.position == seqs[-1] and cursor.complete
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
