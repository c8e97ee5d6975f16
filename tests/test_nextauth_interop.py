"""Moving from the upstream Node tier: NextAuth v4 cookies made by the real next-auth package
are accepted and upgraded, ours can be made in NextAuth's format for it, and the two tiers
share one Redis safely (docs/migration.md)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwe
from joserfc.jwk import OctKey

from regcopilot.workspaces.store import WorkspaceStore
from tests.conftest import PASSWORD, TEST_SECRET
from tests.nextauth_node import NextAuthNode, install
from tests.support import changes_applied, hash_password, validation_key

NA = "next-auth.session-token"
OURS = "regcopilot.session-token"
BEARER = {"Authorization": "Bearer monitor-token"}

# One worker runs them all: the Node set-up (tests/node/setup.sh) is paid once, not per worker.
pytestmark = pytest.mark.xdist_group("nextauth-node")


@pytest.fixture(scope="session")
def next_auth() -> NextAuthNode:
    return install()


# user id → the id of the workspace add_user made current for them
WORKSPACE: dict[str, str] = {}


async def add_user(app: Any, email: str, *, tenant: str = "ws-1", admin: bool = False,
                   name: str | None = "Ada Lovelace") -> str:
    """A user whose current workspace is a team named `tenant` (as on the upstream, whose
    sessions carry the current workspace's id)."""
    user = await app.services.directory.add(
        email, hash_password(PASSWORD), admin=admin, full_name=name
    )
    store = WorkspaceStore(app.services.directory)
    workspace = await store.create_team(user.id, tenant)
    assert await store.switch(user.id, workspace.id)
    WORKSPACE[user.id] = workspace.id
    return user.id


def upstream_token(user_id: str, email: str, tenant: str | None = None, **extra: Any) -> dict:
    """The claims the upstream's jwt callback puts in its token at sign-in."""
    return {"sub": user_id, "email": email, "name": "Ada Lovelace",
            "currentTenantId": tenant or WORKSPACE.get(user_id, "ws-1"),
            "lastValidated": int(time.time() * 1000), **extra}


def set_cookies(r: httpx.Response) -> dict[str, str]:
    """name → the whole Set-Cookie line."""
    return {line.split("=", 1)[0]: line for line in r.headers.get_list("set-cookie")}


def value_of(line: str) -> str:
    return line.split(";", 1)[0].split("=", 1)[1]


def attr(line: str, name: str) -> str | None:
    for part in line.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == name.lower():
            return value
    return None


def seal(claims: dict) -> str:
    """A NextAuth v4 token made without our code: HKDF-SHA256 key, JWE dir + A256GCM."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"",
               info=b"NextAuth.js Generated Encryption Key").derive(TEST_SECRET.encode())
    return jwe.encrypt_compact({"alg": "dir", "enc": "A256GCM"}, json.dumps(claims),
                               OctKey.import_key(key), algorithms=["dir", "A256GCM"])


async def get(app: Any, cookie: str, path: str = "/api/me") -> httpx.Response:
    app.client.cookies.clear()
    return await app.client.get(path, headers={"cookie": cookie})


async def observability(app: Any) -> dict:
    r = await app.client.get("/api/observability", headers=BEARER)
    assert r.status_code == 200, r.text
    return r.json()


async def test_nextauth_cookie_is_accepted_then_upgraded(instance, next_auth):
    async with instance("sqlite", "redis") as app:
        uid = await add_user(app, "ada@example.com")
        token = next_auth.encode(upstream_token(uid, "ada@example.com"), TEST_SECRET, 3600)
        upstream = next_auth.decode(token, TEST_SECRET)

        r = await get(app, f"{NA}={token}")
        assert r.status_code == 200, r.text
        assert r.json() == {"id": uid, "email": "ada@example.com", "name": "Ada Lovelace",
                            "tenantId": WORKSPACE[uid], "role": None, "tenantRole": "owner",
                            "tenantName": "ws-1"}
        cookies = set_cookies(r)
        assert set(cookies) == {OURS, NA}
        assert attr(cookies[NA], "Max-Age") == "0" and value_of(cookies[NA]) == ""
        ours = value_of(cookies[OURS])
        claims = jwt.decode(ours, TEST_SECRET, algorithms=["HS256"])
        # The same session: its id (one sign-out ends both) and no later expiry.
        assert claims["sub"] == uid and claims["jti"] == upstream["jti"]
        assert claims["exp"] <= upstream["exp"]
        assert int(attr(cookies[OURS], "Max-Age") or 0) <= upstream["exp"] - time.time() + 1
        assert attr(cookies[OURS], "HttpOnly") is not None

        # From now on the user is on our format: no more cookies handed out.
        r = await get(app, f"{OURS}={ours}")
        assert r.status_code == 200 and "set-cookie" not in r.headers
        r = await get(app, f"{OURS}={ours}", "/api/auth/session")
        assert r.json()["user"]["name"] == "Ada Lovelace"

        body = await observability(app)
        assert body["authentication"]["migratedSessions"] == 1
        metrics = await app.client.get("/metrics", headers=BEARER)
        assert "regcopilot_migrated_sessions_total 1.0" in metrics.text


async def test_session_endpoint_answers_use_session_fields_for_a_nextauth_cookie(
    instance, next_auth
):
    async with instance() as app:
        uid = await add_user(app, "ada@example.com", tenant="ws-9")
        token = next_auth.encode(upstream_token(uid, "ada@example.com"), TEST_SECRET)
        exp = next_auth.decode(token, TEST_SECRET)["exp"]
        r = await get(app, f"{NA}={token}", "/api/auth/session")
        assert r.status_code == 200
        body = r.json()
        assert body["user"]["name"] == "Ada Lovelace"
        assert body["user"]["currentTenantId"] == WORKSPACE[uid] == body["user"]["tenantId"]
        assert body["user"]["id"] == uid and body["user"]["email"] == "ada@example.com"
        expires = datetime.fromisoformat(body["expires"])
        assert abs(expires - datetime.fromtimestamp(exp, UTC)) < timedelta(seconds=1)
        assert OURS in set_cookies(r), "useSession's poll upgrades the session too"


async def test_chunked_nextauth_cookie_is_joined_and_all_chunks_cleared(instance, next_auth):
    async with instance() as app:
        uid = await add_user(app, "ada@example.com")
        # A token past NextAuth's 3,933-byte chunk size, as a large profile makes one.
        token = next_auth.encode(upstream_token(uid, "ada@example.com", picture="p" * 4000),
                                 TEST_SECRET)
        chunks = next_auth.chunk(NA, token)
        assert [name for name, _ in chunks] == [f"{NA}.0", f"{NA}.1"]
        header = "; ".join(f"{name}={value}" for name, value in reversed(chunks))

        r = await get(app, f"theme=dark; {header}")
        assert r.status_code == 200, r.text
        cookies = set_cookies(r)
        assert set(cookies) == {OURS, f"{NA}.0", f"{NA}.1"}
        assert all(attr(cookies[n], "Max-Age") == "0" for n in (f"{NA}.0", f"{NA}.1"))

        # A chunk missing is not a session.
        r = await get(app, f"{NA}.0={chunks[0][1]}")
        assert r.status_code == 401


async def test_banned_users_nextauth_cookie_is_refused(instance, next_auth):
    async with instance("sqlite", "redis") as app:
        uid = await add_user(app, "eve@example.com")
        token = next_auth.encode(upstream_token(uid, "eve@example.com"), TEST_SECRET)
        assert (await get(app, f"{NA}={token}")).status_code == 200
        await app.services.directory.set_banned_until(uid, datetime.now(UTC) + timedelta(days=1))
        await app.services.validator.user_changed(uid)
        r = await get(app, f"{NA}={token}")
        assert r.status_code == 401 and r.json()["error"] == "account banned"
        # The Node tier's cookie is its own to end: not cleared by a refusal here.
        assert NA not in set_cookies(r)


async def test_wrong_secret_tampered_and_expired_nextauth_cookies_are_refused(
    instance, next_auth
):
    async with instance() as app:
        uid = await add_user(app, "ada@example.com")
        claims = upstream_token(uid, "ada@example.com")
        good = next_auth.encode(claims, TEST_SECRET)
        assert (await get(app, f"{NA}={good}")).status_code == 200

        wrong = next_auth.encode(claims, "another-secret-" + "y" * 40)
        head, key, iv, ciphertext, tag = good.split(".")
        flipped = ("A" if ciphertext[10] != "A" else "B").join((ciphertext[:10], ciphertext[11:]))
        tampered = ".".join((head, key, iv, flipped, tag))
        expired = next_auth.encode(claims, TEST_SECRET, max_age=-60)
        assert "error" in next_auth.decode(expired, TEST_SECRET), "next-auth refuses it too"
        for what, token in {"wrong secret": wrong, "tampered": tampered,
                            "expired": expired, "garbage": "a.b.c.d.e"}.items():
            r = await get(app, f"{NA}={token}")
            assert r.status_code == 401, (what, r.status_code, r.text)
            assert OURS not in set_cookies(r), what


async def test_sign_out_with_a_nextauth_cookie_ends_that_session(instance, next_auth):
    async with instance("sqlite", "redis") as app:
        uid = await add_user(app, "ada@example.com")
        token = next_auth.encode(upstream_token(uid, "ada@example.com"), TEST_SECRET)
        app.client.cookies.clear()
        r = await app.client.post("/api/auth/logout", headers={"cookie": f"{NA}={token}"})
        assert r.status_code == 200
        assert attr(set_cookies(r)[NA], "Max-Age") == "0"
        assert (await get(app, f"{NA}={token}")).status_code == 401, "replayed after sign-out"


async def test_nextauth_format_cookies_are_read_by_next_auth(instance, next_auth):
    async with instance(SESSION_COOKIE_FORMAT="nextauth") as app:
        uid = await add_user(app, "ada@example.com")
        r = await app.login("ada@example.com")
        assert r.status_code == 200
        cookies = set_cookies(r)
        assert set(cookies) == {NA}
        token = value_of(cookies[NA])
        payload = next_auth.decode(token, TEST_SECRET)
        assert payload["sub"] == uid
        expires = datetime.fromisoformat(r.json()["expires"])
        assert payload["exp"] == int(expires.timestamp())
        assert payload["email"] == "ada@example.com" and payload["name"] == "Ada Lovelace"
        assert payload["currentTenantId"] == WORKSPACE[uid]
        assert next_auth.decode(token, "another-secret-" + "y" * 40).get("error")

        # Our tier reads its own NextAuth-format cookie, nothing to convert.
        r = await get(app, f"{NA}={token}")
        assert r.status_code == 200 and "set-cookie" not in r.headers
        # And a cookie of our own format, issued before the switch, is converted to it.
        ours, _ = (await _our_format_token(app, uid))
        r = await get(app, f"{OURS}={ours}")
        assert r.status_code == 200
        cookies = set_cookies(r)
        assert set(cookies) == {NA, OURS}
        assert next_auth.decode(value_of(cookies[NA]), TEST_SECRET)["sub"] == uid
        assert (await observability(app))["authentication"]["migratedSessions"] == 1


async def _our_format_token(app: Any, uid: str) -> tuple[str, Any]:
    from regcopilot.auth.tokens import SessionTokens

    return SessionTokens(TEST_SECRET, 3600).issue(sub=uid, email="ada@example.com",
                                                  tenant=WORKSPACE[uid], role=None)


# --- one Redis, two tiers -------------------------------------------------------------------


async def test_entries_we_write_read_as_the_upstream_reads_them(instance, redis_prefix,
                                                                shared_redis):
    async with instance("sqlite", "redis") as app:
        ok = await add_user(app, "ok@example.com", tenant="ws-7")
        banned = await add_user(app, "banned@example.com")
        await app.services.directory.set_banned_until(banned,
                                                      datetime.now(UTC) + timedelta(days=1))
        for uid in (ok, banned):
            before = int(time.time() * 1000)
            await app.services.validator.validate(uid)
            raw = await shared_redis.get(validation_key(redis_prefix, uid))
            entry = json.loads(raw)
            # The upstream's CacheEntry: isValid (boolean), timestamp (Date.now() ms), tenantId.
            assert type(entry["isValid"]) is bool
            assert before <= entry["timestamp"] <= int(time.time() * 1000)
            if uid == ok:
                assert entry["isValid"] is True and entry["tenantId"] == WORKSPACE[ok]
            else:
                assert entry["isValid"] is False


async def test_upstream_entries_are_misses_never_a_pass_nor_a_demotion(instance, redis_prefix,
                                                                       shared_redis):
    async with instance("sqlite", "redis") as app:
        admin = await add_user(app, "admin@example.com", admin=True)
        banned = await add_user(app, "banned@example.com")
        await app.services.directory.set_banned_until(banned,
                                                      datetime.now(UTC) + timedelta(days=1))
        cookies = {uid: f"{OURS}=" + (await _our_format_token(app, uid))[0]
                   for uid in (admin, banned)}
        # The set-up's own changes (users added, a ban) are applied first: their invalidation,
        # arriving late, would delete the entries this test writes below and then reads.
        await changes_applied(app)

        async def upstream_writes(uid: str, body: dict) -> str:
            key = validation_key(redis_prefix, uid)
            # As its DistributedValidationCache.set does: JSON.stringify, EX 300, no role.
            await shared_redis.set(key, json.dumps(body), ex=300)
            app.services.cache.drop_near(uid)
            return key

        now = int(time.time() * 1000)
        # Valid, but no role: reading it as a pass would make the admin a plain user.
        key = await upstream_writes(admin, {"isValid": True, "timestamp": now,
                                            "tenantId": "ws-1"})
        r = await get(app, cookies[admin], "/api/admin/users")
        assert r.status_code == 200, r.text
        assert json.loads(await shared_redis.get(key))["role"] == "admin", "ours replaced it"

        # isValid:false as the upstream caches after any Supabase error: not a sign-out here.
        key = await upstream_writes(admin, {"isValid": False, "timestamp": now})
        r = await get(app, cookies[admin])
        assert r.status_code == 200 and r.json()["role"] == "admin"
        assert json.loads(await shared_redis.get(key))["isValid"] is True

        # A valid upstream entry for someone the directory bans is no pass either.
        await upstream_writes(banned, {"isValid": True, "timestamp": now, "tenantId": "ws-1"})
        r = await get(app, cookies[banned])
        assert r.status_code == 401 and r.json()["error"] == "account banned"


# --- the move itself --------------------------------------------------------------------------


class Browser:
    """One user's cookie jar behind one balancer: whichever tier answers, its Set-Cookie
    lands here, and the next request carries what the jar holds."""

    def __init__(self) -> None:
        self.jar: dict[str, str] = {}
        self.forced_sign_ins = 0
        self.requests = 0

    def header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.jar.items())

    def take(self, r: httpx.Response) -> None:
        for name, line in set_cookies(r).items():
            if attr(line, "Max-Age") == "0" or not value_of(line):
                self.jar.pop(name, None)
            else:
                self.jar[name] = value_of(line)

    async def visit(self, client: httpx.AsyncClient) -> httpx.Response:
        client.cookies.clear()
        r = await client.get("/api/me", headers={"cookie": self.header()})
        self.requests += 1
        self.take(r)
        if r.status_code == 401:
            self.forced_sign_ins += 1  # the app would send this user to the sign-in page
        return r


async def test_moving_traffic_from_the_node_tier_forces_no_sign_in(
    instance, next_auth, redis_prefix, shared_redis
):
    """Same secret, database and Redis; traffic moved from a Node process using next-auth/jwt
    to ours (first beside it in NextAuth format, then alone in ours). Figures in
    docs/migration.md come from this run (pytest -s prints them)."""
    from tests.conftest import REDIS_URL

    node = next_auth.start_tier(secret=TEST_SECRET, redis_url=REDIS_URL, prefix=redis_prefix)
    figures: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(base_url=node.url) as node_client:
            ada, bob = Browser(), Browser()
            async with instance("sqlite", "redis", SESSION_COOKIE_FORMAT="nextauth") as mixed:
                ada_id = await add_user(mixed, "ada@example.com")
                bob_id = await add_user(mixed, "bob@example.com", name="Bob")
                # 1. Everyone on the Node tier: Ada signs in there.
                r = await node_client.post("/login", json={
                    "id": ada_id, "email": "ada@example.com", "name": "Ada", "tenantId": "ws-1"})
                ada.take(r)
                assert NA in ada.jar
                for _ in range(20):
                    assert (await ada.visit(node_client)).json()["tier"] == "node"
                # 2. Both tiers behind the balancer; Bob signs in on ours (NextAuth format).
                r = await mixed.login("bob@example.com")
                bob.take(r)
                mixed.client.cookies.clear()
                key = validation_key(redis_prefix, ada_id)
                for i in range(40):
                    client = node_client if i % 2 else mixed.client
                    await ada.visit(client)
                    await bob.visit(client)
                    if i % 10 == 9:
                        await shared_redis.delete(key)  # an entry expiring mid-move
                # 3. Node tier drained: ours alone, still issuing NextAuth cookies.
                for _ in range(20):
                    await ada.visit(mixed.client)
                    await bob.visit(mixed.client)
                figures["cookie after mixed phase"] = sorted(ada.jar)
            # 4. Ours restarted with its own format: each session upgraded on first use.
            async with instance("sqlite", "redis") as ours:
                for _ in range(20):
                    await ada.visit(ours.client)
                    await bob.visit(ours.client)
                migrated = (await observability(ours))["authentication"]["migratedSessions"]
    finally:
        node.stop()
    figures.update({
        "requests": ada.requests + bob.requests,
        "forced sign-ins": ada.forced_sign_ins + bob.forced_sign_ins,
        "migratedSessions": migrated,
        "cookies at the end": sorted(ada.jar) + sorted(bob.jar),
    })
    print("\nmove from the Node tier:", json.dumps(figures))
    assert figures["forced sign-ins"] == 0, figures
    assert migrated == 2 and sorted(ada.jar) == sorted(bob.jar) == [OURS]
    assert jwt.decode(ada.jar[OURS], TEST_SECRET, algorithms=["HS256"])["sub"] == ada_id
    assert jwt.decode(bob.jar[OURS], TEST_SECRET, algorithms=["HS256"])["sub"] == bob_id


async def test_over_https_only_the_secure_prefixed_nextauth_cookie_is_read(instance, next_auth):
    async with instance(NEXTAUTH_URL="https://copilot.example.com") as app:
        uid = await add_user(app, "ada@example.com")
        token = next_auth.encode(upstream_token(uid, "ada@example.com"), TEST_SECRET)
        # A plain-named cookie could have been tossed in over http or by a sibling subdomain;
        # NextAuth itself reads only the __Secure- one over https.
        assert (await get(app, f"{NA}={token}")).status_code == 401
        r = await get(app, f"__Secure-{NA}={token}")
        assert r.status_code == 200, r.text
        cookies = set_cookies(r)
        assert set(cookies) == {f"__Secure-{OURS}", f"__Secure-{NA}"}
        assert all(attr(line, "Secure") is not None for line in cookies.values())


async def test_a_nextauth_token_lives_here_no_longer_than_ours(instance, next_auth):
    """NextAuth's default maxAge is 30 days; here a session lasts SESSION_MAX_AGE_SECONDS
    from its iat, so a sign-out's revocation covers every moment the token is accepted."""
    async with instance("sqlite", "redis", SESSION_MAX_AGE_SECONDS=60) as app:
        uid = await add_user(app, "ada@example.com")
        # next-auth's encode stamps iat now, so a 61-second-old token is sealed here by hand
        # (and next-auth's decode checks the sealing).
        now = int(time.time())
        old = seal({**upstream_token(uid, "ada@example.com"), "iat": now - 61,
                    "exp": now + 30 * 86400, "jti": "11111111-2222-4333-8444-555555555555"})
        assert next_auth.decode(old, TEST_SECRET)["sub"] == uid, "next-auth still takes it"
        assert (await get(app, f"{NA}={old}")).status_code == 401
        fresh = next_auth.encode(upstream_token(uid, "ada@example.com"), TEST_SECRET,
                                 max_age=30 * 86400)
        r = await get(app, f"{NA}={fresh}")
        assert r.status_code == 200
        assert int(attr(set_cookies(r)[OURS], "Max-Age") or 0) <= 60
        # Sign out with the upgraded cookie: the NextAuth copy is revoked with it.
        app.client.cookies.clear()
        r = await app.client.post("/api/auth/logout",
                                  headers={"cookie": f"{OURS}={value_of(set_cookies(r)[OURS])}"})
        assert r.status_code == 200
        assert (await get(app, f"{NA}={fresh}")).status_code == 401


async def test_nextauth_tokens_from_a_clock_ahead_are_judged_like_ours(instance):
    """The Node tier's host may run ahead: `iat` up to TOKEN_CLOCK_LEEWAY_SECONDS in the future
    passes, further is refused — the same rule as for our own tokens."""
    async with instance(TOKEN_CLOCK_LEEWAY_SECONDS=10) as app:
        uid = await add_user(app, "ada@example.com")
        now = int(time.time())
        for ahead, status in ((2, 200), (8, 200), (600, 401)):
            token = seal({**upstream_token(uid, "ada@example.com"), "iat": now + ahead,
                          "exp": now + ahead + 3600, "jti": f"clock-{ahead}"})
            assert (await get(app, f"{NA}={token}")).status_code == status, ahead
