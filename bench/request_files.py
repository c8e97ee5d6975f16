"""Which of the package's modules one GET /api/me runs through, cold (the user's answer in no
cache) and warm (in the near tier): the module map in docs/architecture.md, measured rather
than read. In process, over ASGI (no server, no network for the app itself); SQLite in a
temporary directory, and Redis when REDIS_URL is given (its keys under a prefix of their own,
deleted at the end).

    .venv/bin/python -m bench.request_files [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx


async def main(redis_url: str | None) -> None:
    import regcopilot
    from regcopilot.config import load_settings
    from regcopilot.web.app import create_app

    root = str(Path(regcopilot.__file__).parent)
    data = tempfile.mkdtemp(prefix="request-files-")
    prefix = f"request-files:{uuid.uuid4().hex[:8]}:"
    os.environ.update(DATA_DIR=data, DATABASE_URL=f"sqlite:///{data}/users.db",
                      NEXTAUTH_SECRET="s" * 48, PASSWORD_HASH_ROUNDS="4",
                      REDIS_URL=redis_url or "", REDIS_KEY_PREFIX=prefix)
    app = create_app(load_settings())
    services = app.services
    async with app.router.lifespan_context(app):
        user = await services.directory.add(
            "map@example.com", await services.passwords.hash("pw-for-the-map"), admin=False
        )
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.post("/api/auth/login",
                                  json={"email": "map@example.com", "password": "pw-for-the-map"})
            assert r.status_code == 200, r.text
            await client.get("/api/me")  # first-request set-up (imports, pools) out of the way
            for label in ("cold", "warm"):
                if label == "cold":
                    await services.cache.invalidate(user.id)
                seen: set[str] = set()

                def profile(frame: Any, event: str, _arg: Any, seen: set[str] = seen) -> None:
                    name = frame.f_code.co_filename
                    if event == "call" and name.startswith(root):
                        seen.add(name[len(root):].lstrip("/"))

                sys.setprofile(profile)
                try:
                    r = await client.get("/api/me")
                finally:
                    sys.setprofile(None)
                assert r.status_code == 200, r.text
                print(f"{label}: {len(seen)} modules")
                for name in sorted(seen):
                    print(f"  {name}")
        if services.cache.shared is not None:
            await services.cache.shared.delete_prefix(prefix)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default=None, help="REDIS_URL (default: no Redis)")
    asyncio.run(main(parser.parse_args().redis))
