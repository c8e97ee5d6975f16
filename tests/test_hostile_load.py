"""Hostile load: a sign-in storm must not stall signed-in traffic, and slow or idle clients are
closed. Speed figures live in bench/login_storm.py; these tests assert behaviour only."""

from __future__ import annotations

import asyncio

from regcopilot.auth.passwords import Hasher
from tests.conftest import PASSWORD

COOKIE = "regcopilot.session-token"
SLOW_ROUNDS = 13  # ~0.5 s a verify here: long enough to hold every worker during the test


async def test_full_password_queue_answers_503_at_once_and_me_keeps_answering(instance):
    async with instance(PASSWORD_WORKERS=1, PASSWORD_QUEUE_SIZE=1) as app:
        await app.add_user("fast@example.com")
        assert (await app.login("fast@example.com")).status_code == 200
        session = app.client.cookies.get(COOKIE)
        app.client.cookies.clear()
        slow_hash = await asyncio.to_thread(Hasher(SLOW_ROUNDS).hash, PASSWORD)
        await app.services.directory.add("slow@example.com", slow_hash)

        pool = app.services.passwords
        logins = [asyncio.create_task(app.login("slow@example.com")) for _ in range(5)]
        # Wait (event-driven, no timing) until the pool holds its one running and one queued.
        while pool.admitted < pool.capacity:
            await asyncio.sleep(0)
            assert not all(t.done() for t in logins)

        # The loop is free while the worker hashes: a signed-in request is answered now.
        me = await app.client.get("/api/me", headers={"cookie": f"{COOKIE}={session}"})
        assert me.status_code == 200
        assert pool.admitted == pool.capacity  # still hashing: /api/me did not wait for it

        answers = await asyncio.gather(*logins)
        codes = sorted(r.status_code for r in answers)
        assert codes == [200, 200, 503, 503, 503], codes
        for r in answers:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1"
                assert "sign-ins" in r.json()["error"]
        assert pool.refused == 3
        assert pool.admitted == 0
