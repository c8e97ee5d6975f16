"""Running the regcopilot command in tests: its path, its environment, the id format it prints."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.conftest import TEST_SECRET

REGCOPILOT = str(Path(sys.executable).with_name("regcopilot"))


UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def cli_env(tmp_path: Path) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path}/users.db",
        DATA_DIR=str(tmp_path / "data"),
        NEXTAUTH_SECRET=TEST_SECRET,
    )
    return env
