"""Issue 25, item 1: nothing read with a session stays in the browser's cache. Every route the
app declares — enumerated from the app itself, so a route added later is covered without
touching this test — answers with `Cache-Control: no-store`, signed in or refused, through the
router, the hot path or a middleware's refusal (the three senders, web/no_store.py); sign-out
also sends `Clear-Site-Data: "cache"`."""

from __future__ import annotations

import re

from regcopilot.web.access import declared_routes

# Any id fits a path parameter: the answer may be 404/422, and still must not be stored.
FILLER = "00000000-0000-4000-8000-000000000000"


def requests_for(app) -> list[tuple[str, str]]:
    found = []
    for path, route, _ in declared_routes(app.routes):
        concrete = re.sub(r"\{[^}]+\}", FILLER, path)
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                found.append((method, concrete))
    return found


async def test_every_route_answers_no_store_signed_in_and_refused(instance):
    async with instance() as app:
        await app.add_user("admin@example.com", admin=True)
        routes = requests_for(app.client._transport.app)
        # The routes the issue names, so an enumeration that finds nothing cannot pass.
        for must in [("GET", "/"), ("GET", "/admin"), ("GET", "/api/me"),
                     ("GET", "/api/auth/session"), ("GET", "/admin/observability")]:
            assert must in routes, routes
        not_stored: list[str] = []
        for signed_in in (False, True):
            if signed_in:
                assert (await app.login("admin@example.com")).status_code == 200
            for method, path in routes:
                if path == "/api/auth/logout":
                    continue  # would end the session the rest of the loop needs
                r = await app.client.request(method, path, json={})
                if r.headers.get("cache-control") != "no-store":
                    not_stored.append(f"{method} {path} ({'in' if signed_in else 'out'}, "
                                      f"{r.status_code}): {r.headers.get('cache-control')}")
        assert not not_stored, "\n".join(not_stored)


async def test_hot_path_and_middleware_refusals_are_not_stored(instance):
    async with instance() as app:
        await app.add_user("me@example.com")
        refused = await app.client.get("/api/me")  # the session middleware's own refusal
        assert refused.status_code == 401 and refused.headers["cache-control"] == "no-store"
        page = await app.client.get("/admin")  # a page's refusal: the redirect to /login
        assert page.status_code == 303 and page.headers["cache-control"] == "no-store"
        forged = await app.client.post("/api/auth/logout",  # the CSRF check's refusal
                                        headers={"origin": "https://elsewhere.example"})
        assert forged.status_code == 403 and forged.headers["cache-control"] == "no-store"
        assert (await app.login("me@example.com")).status_code == 200
        hot = await app.client.get("/api/me")  # answered by web/front_door.py, before the router
        assert hot.status_code == 200 and hot.headers["cache-control"] == "no-store"
        assert hot.headers.get_list("cache-control") == ["no-store"]


async def test_sign_out_clears_the_site_cache(instance):
    async with instance() as app:
        await app.add_user("out@example.com")
        assert (await app.login("out@example.com")).status_code == 200
        r = await app.client.post("/api/auth/logout")
        assert r.status_code == 200
        assert r.headers["clear-site-data"] == '"cache"'
        assert r.headers["cache-control"] == "no-store"
        form = await app.client.post("/api/auth/logout", data={"x": "1"})
        assert form.status_code == 303 and form.headers["clear-site-data"] == '"cache"'
