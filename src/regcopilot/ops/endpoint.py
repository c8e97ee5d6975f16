"""Reading a running instance's `/api/observability`, the way a monitor does: one GET with
the bearer token, short timeouts, and one readable line when it cannot be read."""

from __future__ import annotations

import os
from typing import Any

import httpx

OBSERVABILITY_PATH = "/api/observability"
DEFAULT_URL = "http://localhost:3000"
TIMEOUT_SECONDS = 5.0


class Unreachable(Exception):
    """The report could not be read: connection refused, timed out, an error, or not JSON."""


class Refused(Exception):
    """The instance answered 401: the token was wrong or missing. Not an outage, so it gets
    its own message and exit status."""


REFUSED = "refused: wrong or missing token"


def resolve_token(token: str | None) -> tuple[str | None, str]:
    """The token to send and where it came from: --token / $OBSERVABILITY_TOKEN, else the
    one `serve` generated into DATA_DIR when run from this directory."""
    if token:
        return token, "--token or OBSERVABILITY_TOKEN"
    from regcopilot.local_token import local_data_dir, local_token, token_path

    found = local_token()
    return found, str(token_path(local_data_dir())) if found else ""


def default_url() -> str:
    # The app's own public URL is where an operator on the host would point first.
    return os.environ.get("NEXTAUTH_URL") or DEFAULT_URL


def report_url(url: str) -> str:
    """Accept a base URL or the full endpoint, as operators paste either."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url if url.endswith(OBSERVABILITY_PATH) else url + OBSERVABILITY_PATH


def fetch(url: str, token: str | None, timeout: float = TIMEOUT_SECONDS,
          path: str = OBSERVABILITY_PATH) -> tuple[httpx.Response, float]:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.get(url, headers=headers)
    except httpx.TimeoutException:
        raise Unreachable(f"{url}: no answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise Unreachable(f"{url}: {exc or type(exc).__name__}") from None
    return response, response.elapsed.total_seconds() * 1000


def refused_hint(source: str) -> str:
    if source:
        return f"the token from {source} was not accepted"
    return ("no token: set OBSERVABILITY_TOKEN, pass --token, or run from the directory "
            "`regcopilot serve` runs in (it keeps one in data/.observability_token)")


def read_report(url: str, token: str | None, timeout: float = TIMEOUT_SECONDS,
                source: str = "") -> dict[str, Any]:
    endpoint = report_url(url)
    response, _ms = fetch(endpoint, token, timeout)
    if response.status_code == 401:
        raise Refused(f"{REFUSED} (HTTP 401; {refused_hint(source if token else '')})")
    if response.status_code != 200:
        raise Unreachable(f"{endpoint}: HTTP {response.status_code} {response.text[:120]!r}")
    try:
        body = response.json()
    except ValueError:
        raise Unreachable(f"{endpoint}: the answer is not JSON") from None
    if not isinstance(body, dict) or "authentication" not in body:
        raise Unreachable(f"{endpoint}: not an observability report (no 'authentication' key)")
    return body
