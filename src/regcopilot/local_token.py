"""The observability token an instance generates for its own operators.

Without `OBSERVABILITY_TOKEN`, `/api/observability` and `/metrics` answer only admin sessions,
so `regcopilot monitor` against the server the README starts got 401 and no way to get a
token. `serve` therefore writes one random token into DATA_DIR once (beside the generated
NEXTAUTH secret); the app uses it, and `monitor` / `cost --url` run from the same directory
read it. Prometheus reads the same file as its `credentials_file`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TOKEN_FILE = ".observability_token"
DEFAULT_DATA_DIR = "./data"


def token_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / TOKEN_FILE


def read_token(data_dir: str | Path) -> str | None:
    try:
        return token_path(data_dir).read_text().strip() or None
    except OSError:
        return None


def ensure_token(data_dir: str | Path) -> tuple[str, bool]:
    """The token in DATA_DIR, generated if missing; True when it was generated just now."""
    existing = read_token(data_dir)
    if existing:
        return existing, False
    path = token_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # 0600 from the start: the token must never be readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, True


def local_data_dir() -> str:
    """DATA_DIR as the app in this directory would read it (environment over `.env`)."""
    if os.environ.get("DATA_DIR"):
        return os.environ["DATA_DIR"]
    from dotenv import dotenv_values

    return dotenv_values(".env").get("DATA_DIR") or DEFAULT_DATA_DIR


def local_token() -> str | None:
    """The token a server started from this directory uses, if it generated one."""
    return read_token(local_data_dir())
