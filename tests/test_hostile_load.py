"""Hostile load: a sign-in storm must not stall signed-in traffic, and slow or idle clients are
closed. Speed figures live in bench/login_storm.py; these tests assert behaviour only."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx

from regcopilot.auth.passwords import Hasher
from regcopilot.users.sqlite import SqliteDirectory
from tests.cluster import ServerProcess
from tests.conftest import PASSWORD, TEST_SECRET
from tests.support import COOKIE, TEST_HASH_ROUNDS, eventually, hash_password

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


async def _server_with_user(tmp_path: Path, **extra: object) -> tuple[ServerProcess, str]:
    db = tmp_path / "users.db"
    directory = SqliteDirectory(str(db))
    await directory.open()
    try:
        await directory.add("reader@example.com", hash_password(PASSWORD))
    finally:
        await directory.close()
    env = {
        "DATABASE_URL": f"sqlite:///{db}",
        "REDIS_URL": "",
        "NEXTAUTH_SECRET": TEST_SECRET,
        "DATA_DIR": str(tmp_path / "data"),
        "PASSWORD_HASH_ROUNDS": str(TEST_HASH_ROUNDS),
        **{k: str(v) for k, v in extra.items()},
    }
    server = await asyncio.to_thread(ServerProcess("serve", env, tmp_path).start)
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.post("/api/auth/login",
                              json={"email": "reader@example.com", "password": PASSWORD})
        assert r.status_code == 200, r.text
        return server, r.cookies[COOKIE]


async def _dribble(writer: asyncio.StreamWriter, stop: asyncio.Event, every: float) -> None:
    """Request headers a byte every `every` seconds, never finished: until `stop` or closed."""
    for byte in b"GET /api/me HTTP/1.1\r\nHost: t\r\nX-Padding: " + b"p" * 500:
        if stop.is_set() or writer.is_closing():
            return
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every)


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Reads until the server closes the connection (EOF or reset); any bytes are drained."""
    try:
        while await reader.read(4096):
            pass
    except ConnectionError:
        pass
    return True


async def test_idle_and_byte_by_byte_clients_are_closed_while_me_answers(tmp_path):
    timeout = 1.0
    server, cookie = await _server_with_user(
        tmp_path, HTTP_HEADER_TIMEOUT_SECONDS=timeout, HTTP_KEEPALIVE_TIMEOUT_SECONDS=timeout)
    port = server.port
    stop = asyncio.Event()
    try:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]

        # Kept alive after one complete request, then silent: the keep-alive timeout's case.
        kept = await asyncio.open_connection("127.0.0.1", port)
        kept[1].write(f"GET /api/me HTTP/1.1\r\nHost: t\r\nCookie: {COOKIE}={cookie}\r\n\r\n"
                      .encode())
        status_line = await kept[0].readline()
        assert b" 200 " in status_line, status_line

        slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        dribblers = [asyncio.create_task(_dribble(w, stop, timeout / 10)) for _, w in slow]

        codes: list[int] = []

        async def read_me() -> None:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                while not stop.is_set() and len(codes) < 5000:
                    r = await client.get("/api/me", headers={"cookie": f"{COOKIE}={cookie}"})
                    codes.append(r.status_code)
                    await asyncio.sleep(0.005)

        me = asyncio.create_task(read_me())
        # Closed by the server within the timeout (polled with a generous deadline).
        closers = [_closed_by_server(r) for r, _ in [*idle, kept, *slow]]
        await asyncio.wait_for(asyncio.gather(*closers), timeout=timeout * 20)
        stop.set()
        await me
        await asyncio.gather(*dribblers)
        assert codes and set(codes) == {200}, codes[:20]
        log = server.log_path.read_text()
        assert "HTTP_HEADER_TIMEOUT_SECONDS" in log, log[-2000:]
    finally:
        stop.set()
        server.stop()


async def test_a_later_request_dribbling_its_headers_is_closed(tmp_path):
    """On a kept-alive connection, the next request's headers get the same deadline from their
    first byte, although the usual request (headers in one read) arms no timer at all
    (web/connections.py). The keep-alive timeout is long here, so only the header deadline can
    close it."""
    timeout = 1.0
    server, cookie = await _server_with_user(
        tmp_path, HTTP_HEADER_TIMEOUT_SECONDS=timeout, HTTP_KEEPALIVE_TIMEOUT_SECONDS=120)
    stop = asyncio.Event()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        request = f"GET /api/me HTTP/1.1\r\nHost: t\r\nCookie: {COOKIE}={cookie}\r\n\r\n"
        for _ in range(3):  # complete requests, each headers in one write: answered
            writer.write(request.encode())
            assert b" 200 " in await reader.readline()
            length = 0
            while (line := await reader.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)

        dribbling = asyncio.create_task(_dribble(writer, stop, timeout / 10))
        await asyncio.wait_for(_closed_by_server(reader), timeout=timeout * 20)
        stop.set()
        await dribbling
        await eventually(lambda: "HTTP_HEADER_TIMEOUT_SECONDS" in server.log_path.read_text(),
                         timeout=10)
    finally:
        stop.set()
        server.stop()


async def test_connection_cap_refuses_new_connections_and_says_so(tmp_path):
    server, cookie = await _server_with_user(
        tmp_path, HTTP_MAX_CONNECTIONS=10, HTTP_HEADER_TIMEOUT_SECONDS=60)
    try:
        held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(10)]
        reader, _writer = await asyncio.open_connection("127.0.0.1", server.port)
        answer = await asyncio.wait_for(reader.read(), timeout=10)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"retry-after: 1" in answer.lower()
        line = "Connection limit reached: 10 connections open (HTTP_MAX_CONNECTIONS)"
        await eventually(lambda: line in server.log_path.read_text(), timeout=10)

        for _, w in held:
            w.close()
        # Room again once they are gone: signed-in requests are served as before.
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:

            async def me_ok() -> bool:
                try:
                    r = await client.get("/api/me", headers={"cookie": f"{COOKIE}={cookie}"})
                except httpx.HTTPError:
                    return False
                return r.status_code == 200

            await eventually(me_ok, timeout=10)
    finally:
        server.stop()



async def test_per_user_memory_is_capped_by_the_settings(instance):
    """60 distinct users through a process whose caps are 5: nothing holds more than 5."""
    caps = {"DECODED_TOKEN_CACHE_SIZE": 5, "ACTIVE_USERS_TRACKED": 5,
            "REVOCATIONS_KEPT_LOCALLY": 5}
    async with instance(**caps) as app:
        svc = app.services
        for i in range(60):
            token, claims = svc.tokens.issue(
                sub=str(uuid.uuid4()), email=f"u{i}@example.com", tenant="t", role=None)
            svc.tokens.decode(token)
            svc.metrics.login(claims.sub)
            await svc.revocations.revoke(claims.jti, claims.exp)
        assert len(svc.tokens._decoded) == 5
        assert len(svc.metrics.local.active) == 5
        assert len(svc.revocations.local) == 5
        # The newest are the ones kept: the last revocation still holds.
        assert await svc.revocations.is_revoked(claims.jti)
