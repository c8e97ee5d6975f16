"""The uvicorn entry point (`regcopilot.web.factory:app`, factory=True): one app per worker."""

from __future__ import annotations

import logging
import os

from fastapi import FastAPI

from regcopilot.config import SETTINGS_CHECKED, load_settings
from regcopilot.web import drain
from regcopilot.web.app import create_app


def app() -> FastAPI:
    # `serve` has already said what the settings warn about (config.SETTINGS_CHECKED).
    settings = load_settings(warn=os.environ.get(SETTINGS_CHECKED) != "1")
    logging.basicConfig(
        level=settings.LOG_LEVEL.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    drain.install(settings.SHUTDOWN_DRAIN_SECONDS)
    return create_app(settings)
