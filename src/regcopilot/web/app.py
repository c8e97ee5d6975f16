"""create_app: settings → services → middleware → routes."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from regcopilot import __version__
from regcopilot.config import Settings, load_settings
from regcopilot.web import refusals
from regcopilot.web.access import access_map
from regcopilot.web.csrf import CsrfMiddleware
from regcopilot.web.front_door import FastFirst
from regcopilot.web.middleware import SessionMiddleware
from regcopilot.web.no_store import NoStore
from regcopilot.web.routes import admin, auth, dashboard, health, nextauth, observability, pages
from regcopilot.web.routes import console as console_routes
from regcopilot.web.routes import invitations as invitation_routes
from regcopilot.web.routes import prometheus as prometheus_routes
from regcopilot.web.routes import sessions as session_routes
from regcopilot.web.routes import workspace_lifecycle as lifecycle_routes
from regcopilot.web.routes import workspaces as workspace_routes
from regcopilot.web.services import Services, build_services


class CopilotApp(FastFirst):
    """The app, with the services its routes read (web/deps.services)."""

    services: Services


def create_app(settings: Settings | None = None, services: Services | None = None) -> CopilotApp:
    """`services`: a graph built elsewhere (bench/variants.py); by default from settings."""
    settings = settings or load_settings()
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(_app: CopilotApp) -> AsyncIterator[None]:
        await services.start()
        # Everything built so far lives as long as the process: moving it out of the
        # collector's sight makes each full collection scan only per-request garbage (the
        # benchmark's p99 was set by ~60 ms full collections over ~100,000 startup objects).
        gc.collect()
        gc.freeze()
        app.telemetry_started()
        try:
            yield
        finally:
            await services.close()

    app = CopilotApp(title="Regulatory Intelligence Copilot", version=__version__,
                     lifespan=lifespan)
    app.services = services
    refusals.install(app)
    for module in (auth, nextauth, pages, health, observability, admin, prometheus_routes,
                   dashboard):
        app.include_router(module.router)
    app.include_router(workspace_routes.router)
    app.include_router(workspace_routes.pages)
    app.include_router(lifecycle_routes.router)
    app.include_router(invitation_routes.router)
    app.include_router(invitation_routes.pages)
    app.include_router(session_routes.router)
    app.include_router(console_routes.router)
    app.include_router(session_routes.admin_router)
    app.enable_fast([
        # First: a forged cross-site request never reaches the session.
        (CsrfMiddleware, {"public_url": settings.NEXTAUTH_URL,
                          "on_refused": services.security.csrf_refused}),
        # What each route declared it needs (web/access.py), read once.
        (SessionMiddleware, {"services": services, "access": access_map(app.routes)}),
        # Around the router only: every answer a route makes is never stored (web/no_store.py;
        # the fast routes and the middleware refusals carry the same header themselves).
        (NoStore, {}),
    ])
    return app
