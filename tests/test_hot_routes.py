"""/api/health and /api/me are answered in front of FastAPI's router (web/hot.py): they must
answer exactly as the routes they shortcut — same status, body bytes and headers — and be
refused exactly as before."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from regcopilot.web.app import create_app


async def test_me_and_health_answer_like_a_json_response(instance):
    async with instance() as app:
        user_id = await app.add_user("hot@example.com", tenant="acme")
        assert (await app.login("hot@example.com")).status_code == 200
        r = await app.client.get("/api/me")
        current = (await app.client.get("/api/workspaces")).json()["current"]
        expected = {"id": user_id, "email": "hot@example.com", "name": None,
                    "tenantId": current, "tenantRole": "owner",
                    "tenantName": "Personal Workspace", "role": None}
        assert r.status_code == 200
        assert r.json() == expected
        # What FastAPI would have sent for the route's dict, byte for byte.
        reference = JSONResponse(expected)
        assert r.content == reference.body
        assert r.headers["content-type"] == reference.headers["content-type"]
        assert r.headers["content-length"] == reference.headers["content-length"]

        h = await app.client.get("/api/health")
        assert h.status_code == 200 and h.content == JSONResponse({"status": "ok"}).body


async def test_refusals_and_other_methods_still_reach_the_router(instance, settings_for):
    async with instance() as app:
        r = await app.client.get("/api/me")
        assert r.status_code == 401 and r.json()["error"] == "not signed in"
        bad = await app.client.get("/api/me", headers={"Cookie": "regcopilot.session-token=x.y.z"})
        assert bad.status_code == 401
        assert (await app.client.post("/api/health")).status_code == 405
    # Still declared for clients that read the schema.
    paths = create_app(settings_for()).openapi()["paths"]
    assert "/api/me" in paths and "/api/health" in paths
