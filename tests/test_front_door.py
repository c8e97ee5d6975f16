"""The `@fast` routes (web/front_door.py) are dispatched in front of FastAPI's own layers: they
must answer exactly as FastAPI would — same status, body bytes and headers, refusals and
re-issued cookies included — and the guards must run on them as on every other route."""

from __future__ import annotations

import functools
import re
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from regcopilot.web.app import create_app
from regcopilot.web.csrf import CsrfMiddleware
from regcopilot.web.front_door import FastFirst, fast
from regcopilot.web.middleware import SessionMiddleware
from regcopilot.web.no_store import NoStore
from tests.conftest import serve
from tests.support import COOKIE

# Differ between any two answers whoever sends them.
VOLATILE = {"date", "server"}


def fastapi_only(app: FastFirst) -> httpx.AsyncClient:
    """The same app with every request taken FastAPI's way (its own __call__)."""

    async def through_fastapi(scope: Any, receive: Any, send: Any) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    transport = httpx.ASGITransport(app=through_fastapi, client=("127.0.0.1", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def shape(r: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]], list[int]]:
    """Status, body and headers; a Set-Cookie's token is cut (a re-issue signs a new one each
    time), its name and attributes kept, and its Max-Age given apart: a re-issued cookie lives
    as long as the session has left, which two answers a second boundary apart give as N and
    N - 1."""
    headers, ages = [], []
    for name, value in r.headers.multi_items():
        if name in VOLATILE:
            continue
        if name == "set-cookie":
            cookie, _, attributes = value.partition(";")
            ages += [int(age) for age in MAX_AGE.findall(attributes)]
            attributes = MAX_AGE.sub("Max-Age=<s>", attributes)
            value = cookie.split("=", 1)[0] + "=<token>;" + attributes
        headers.append((name, value))
    return r.status_code, r.content, sorted(headers), sorted(ages)


MAX_AGE = re.compile(r"Max-Age=(-?\d+)")


def assert_same(got: httpx.Response, want: httpx.Response, context: object) -> None:
    """The same answer: equal shapes, every Max-Age within the second the two were apart."""
    *answer, ages = shape(got)
    *expected, expected_ages = shape(want)
    assert answer == expected, context
    assert len(ages) == len(expected_ages), context
    assert all(abs(a - b) <= 1 for a, b in zip(ages, expected_ages, strict=True)), (
        context, ages, expected_ages)


async def test_every_fast_route_answers_as_fastapi_would(settings_for):
    settings = settings_for()
    async with serve(settings) as app:
        front = app.client._transport.app  # type: ignore[attr-defined]
        paths = sorted(front._fronts)
        assert {"/api/health", "/api/me", "/api/auth/session"} <= set(paths)
        user_id = await app.add_user("fast@example.com", tenant="acme")
        assert (await app.login("fast@example.com")).status_code == 200
        good = app.client.cookies[COOKIE]
        app.client.cookies.clear()
        claims = app.services.tokens.decode(good)
        # A session naming a workspace it was not served in: re-issued with a header.
        moved, _ = app.services.tokens.issue(sub=user_id, email=claims.email,
                                             tenant="elsewhere", role=None)
        revoked, revoked_claims = app.services.tokens.issue(
            sub=user_id, email=claims.email, tenant=claims.tenant, role=None)
        await app.services.sessions.logout(revoked_claims.jti, user_id, revoked_claims.exp)
        cases = {
            "signed in": [("cookie", f"{COOKIE}={good}")],
            "no cookie": [],
            "bad token": [("cookie", f"{COOKIE}=x.y.z")],
            "duplicate cookie": [("cookie", f"{COOKIE}={good}; {COOKIE}=planted")],
            "revoked": [("cookie", f"{COOKIE}={revoked}")],
            "workspace moved": [("cookie", f"{COOKIE}={moved}")],
        }
        async with fastapi_only(front) as reference:
            for path in paths:
                for case, headers in cases.items():
                    got = await app.client.get(path, headers=headers)
                    want = await reference.get(path, headers=headers)
                    assert_same(got, want, (path, case))
        # And what FastAPI sends for the route's dict, byte for byte, is what the fast path
        # sends: the encoder is not FastAPI's.
        r = await app.client.get("/api/me", headers=cases["signed in"])
        assert r.content == JSONResponse(r.json()).body
        assert r.headers["content-length"] == str(len(r.content))
        assert "x-workspace-changed" in (
            await app.client.get("/api/me", headers=cases["workspace moved"])).headers


async def test_the_guards_run_on_the_fast_routes(settings_for):
    """Signed out, tampered, duplicated and revoked sessions are refused on /api/me and give no
    user on /api/auth/session, as on FastAPI's way."""
    async with serve(settings_for()) as app:
        user_id = await app.add_user("guard@example.com")
        token, claims = app.services.tokens.issue(sub=user_id, email="guard@example.com",
                                                  tenant="", role=None)
        ok = {"cookie": f"{COOKIE}={token}"}
        assert (await app.client.get("/api/me", headers=ok)).status_code == 200
        assert (await app.client.get("/api/auth/session", headers=ok)).json()["user"]["id"] \
            == user_id
        dup = {"cookie": f"{COOKIE}={token}; {COOKIE}={token}"}
        assert (await app.client.get("/api/me", headers=dup)).status_code == 401
        assert (await app.client.get("/api/auth/session", headers=dup)).json() == {}
        await app.services.sessions.logout(claims.jti, user_id, claims.exp)
        r = await app.client.get("/api/me", headers=ok)
        assert r.status_code == 401 and r.json()["error"] == "session ended"
        assert (await app.client.get("/api/auth/session", headers=ok)).json() == {}
        # Other methods still reach FastAPI's router.
        assert (await app.client.post("/api/health")).status_code == 405


def test_each_fast_route_keeps_the_guards_that_act_on_it(settings_for):
    """A guard is left out of a fast route's chain only when it says it passes that request
    whatever it carries: CSRF never looks at a GET, the session check not at a public path."""
    app = create_app(settings_for())

    def chain(path: str) -> list[type]:
        layer, kinds = app._fronts[path], []
        while True:
            if isinstance(layer, functools.partial):  # a guard fitted to the path (for_path)
                layer = layer.func.__self__  # type: ignore[attr-defined]
            if not hasattr(layer, "app"):
                return kinds
            kinds.append(type(layer))
            layer = layer.app

    assert chain("/api/me") == [SessionMiddleware]
    assert chain("/api/auth/session") == [SessionMiddleware]
    assert chain("/api/health") == []
    # Every other request still meets both, in FastAPI's stack, and the no-store layer (the
    # fast routes' dispatcher sends that header itself: tests/test_no_store.py).
    assert [m.cls for m in app.user_middleware] == [CsrfMiddleware, SessionMiddleware, NoStore]


def test_the_fast_routes_stay_in_the_schema(settings_for):
    paths = create_app(settings_for()).openapi()["paths"]
    assert {"/api/me", "/api/health", "/api/auth/session"} <= set(paths)


def _app_with(router: APIRouter) -> FastFirst:
    app = FastFirst()
    app.include_router(router)
    return app


def test_only_endpoints_fastapi_need_not_solve_can_be_marked():
    def dependency() -> int:
        return 1

    with_dependency = APIRouter()

    @with_dependency.get("/x")
    @fast
    async def x(n: int = Depends(dependency)) -> dict:
        return {"n": n}

    with_query = APIRouter()

    @with_query.get("/y")
    @fast
    async def y(q: str) -> dict:
        return {"q": q}

    for router in (with_dependency, with_query):
        with pytest.raises(TypeError, match="@fast"):
            _app_with(router).enable_fast([])

    included = APIRouter()

    @included.get("/z")
    @fast
    async def z(request: Request) -> dict:
        return {}

    app = FastFirst()
    app.include_router(included, dependencies=[Depends(dependency)])
    with pytest.raises(TypeError, match="included with dependencies"):
        app.enable_fast([])


def test_middleware_added_after_enable_fast_is_refused():
    """It would guard FastAPI's way and not the fast routes."""
    plain = APIRouter()

    @plain.get("/ok")
    @fast
    async def ok() -> dict:
        return {"ok": True}

    app = _app_with(plain)
    app.enable_fast([(CsrfMiddleware, {"public_url": "http://127.0.0.1:3000"})])
    with pytest.raises(RuntimeError, match="enable_fast"):
        app.add_middleware(CsrfMiddleware, public_url="http://127.0.0.1:3000")


async def test_an_exception_in_a_fast_endpoint_gets_the_apps_handler():
    raising = APIRouter()

    @raising.get("/boom")
    @fast
    async def boom(request: Request) -> dict:
        from fastapi import HTTPException

        raise HTTPException(418, "teapot")

    app = _app_with(raising)

    async def teapot(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"handled": str(exc)}, status_code=418)

    from starlette.exceptions import HTTPException as StarletteHTTPException

    app.add_exception_handler(StarletteHTTPException, teapot)
    app.enable_fast([])
    assert "/boom" in app._fronts
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/boom")
    assert r.status_code == 418 and r.json()["handled"]


@pytest.mark.parametrize("value", ["é", "naïve 日本", "\u2028", "<>&", "\x00\x1f\x7f",
                                   'a"b\\c\n\t', None, 0, True, [1, "x"]])
def test_the_fast_encoder_sends_starlettes_bytes(value):
    """orjson replaces json.dumps on the fast routes: escapes, non-ASCII and spacing must come
    out as Starlette's JSONResponse writes them."""
    from regcopilot.web.front_door import FastJSONResponse

    body = {"user": {"name": value, "id": "x"}, "ü": value}
    assert FastJSONResponse(body).body == JSONResponse(body).body


async def test_answers_of_every_length_carry_their_own_length(settings_for):
    """The start messages shared by answers of one length: sessions whose answers differ in
    length (up to what a token under its 4 KiB limit can carry), each asked twice in turn,
    get FastAPI's bytes."""
    async with serve(settings_for()) as app:
        front = app.client._transport.app  # type: ignore[attr-defined]
        user_id = await app.add_user("lengths@example.com")
        tokens = [app.services.tokens.issue(sub=user_id, email="lengths@example.com",
                                            tenant="", role=None, name="n" * size)[0]
                  for size in (1, 2, 300, 2500)]
        async with fastapi_only(front) as reference:
            for _ in range(2):
                for token in tokens:
                    for path in ("/api/me", "/api/auth/session"):
                        headers = [("cookie", f"{COOKIE}={token}")]
                        got = await app.client.get(path, headers=headers)
                        want = await reference.get(path, headers=headers)
                        assert got.status_code == 200
                        assert_same(got, want, (path, len(got.content)))
                        assert got.headers["content-length"] == str(len(got.content))
