"""Variant (0): the ceiling a user would write without us — a bare FastAPI app with one route
returning a small JSON, served by the same uvicorn flags on the same core as our server.

    uvicorn bench.bare_app:app --no-access-log --proxy-headers
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/api/health")
async def health() -> dict:
    return {"status": "ok"}
