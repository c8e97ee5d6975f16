"""One way to refuse: the body every JSON refusal carries, the one Retry-After for a directory
that cannot answer, and the exception handlers that turn exceptions into them.

Body: `{"error": <message>, "status": <code>}` — plus `detail` (the same message, or
FastAPI's list of validation errors) for clients written against FastAPI's default shape.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from regcopilot.auth.identity import DIRECTORY_DOWN, RETRY_AFTER_SECONDS, Refusal
from regcopilot.users.directory import DirectoryUnavailable
from regcopilot.web.no_store import NO_STORE

log = logging.getLogger("regcopilot.auth")

__all__ = ["DIRECTORY_DOWN", "RETRY_AFTER_SECONDS", "directory_down", "error_body", "install",
           "refusal", "refused", "retry_after", "send_refusal"]


# /api/observability and /metrics without a monitor's token or an admin's session: what to send,
# and where `serve` put the token it generated (the setting's name, not this host's path).
MONITOR_NEEDED = (
    "send Authorization: Bearer <OBSERVABILITY_TOKEN>, or sign in as an admin; without "
    "OBSERVABILITY_TOKEN set, `regcopilot serve` generated one into "
    "DATA_DIR/.observability_token (./data/.observability_token by default)"
)


def retry_after(seconds: int = RETRY_AFTER_SECONDS) -> dict[str, str]:
    return {"Retry-After": str(seconds)}


def error_body(status: int, message: str, detail: Any = None) -> dict[str, Any]:
    return {"error": message, "status": status, "detail": message if detail is None else detail}


def refusal(status: int, message: str, headers: dict[str, str] | None = None,
            detail: Any = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, detail), status_code=status, headers=headers)


def refused(answer: Refusal) -> JSONResponse:
    """A use case's Refusal as the JSON refusal, with its Retry-After when it has one."""
    headers = retry_after(answer.retry_after) if answer.retry_after is not None else None
    return refusal(answer.status, answer.message, headers)


def directory_down() -> JSONResponse:
    return refusal(503, DIRECTORY_DOWN, retry_after())


async def _directory_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("User directory unavailable: %s", exc)
    return directory_down()


async def _http_exception(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return refusal(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    message = f"{where}: {first.get('msg', 'invalid request')}"
    return refusal(422, message, detail=jsonable(errors))


def jsonable(errors: Any) -> Any:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(errors)


def install(app: FastAPI) -> None:
    """Every route's exceptions become the one body; DirectoryUnavailable the one 503."""
    app.add_exception_handler(DirectoryUnavailable, _directory_unavailable)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _invalid_request)


async def send_refusal(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
    ctype: bytes = b"application/json",
) -> None:
    """A refusal from plain ASGI middleware (before any route): the same body and headers as
    the handlers' answers, never stored (web/no_store.py)."""
    headers = [*headers, (b"content-type", ctype), (b"content-length", str(len(body)).encode()),
               NO_STORE]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
