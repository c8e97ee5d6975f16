"""`regcopilot serve` as a new user meets it, run as a real process from a fresh directory:
a bad DATABASE_URL or a taken port is one line and a non-zero exit (no traceback), the port
comes from --port or PORT, the generated secret and observability token are announced once,
and `monitor` / `cost --url` run from the same directory read that token (issue 16)."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.conftest import PG_ADMIN, REDIS_URL, TEST_SECRET
from tests.support import answering, free_port, port_open

REGCOPILOT = str(Path(sys.executable).with_name("regcopilot"))
KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
PG_BASE = PG_ADMIN.rsplit("/", 1)[0]  # postgresql://postgres@127.0.0.1:5432


def fresh_env(**values: str) -> dict[str, str]:
    """The environment of a new user's shell: none of the app's variables set."""
    env = {k: v for k, v in os.environ.items() if k in KEEP}
    env.update(values)
    return env


def run(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([REGCOPILOT, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@contextlib.contextmanager
def served(cwd: Path, env: dict[str, str], port: int, *args: str) -> Iterator[Path]:
    log = cwd / f"serve-{uuid.uuid4().hex[:6]}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([REGCOPILOT, "serve", *args], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT)

    with answering(proc, f"http://127.0.0.1:{port}/api/health", log,
                   "serve answering /api/health"):
        yield log


def bad_databases(tmp: Path) -> list[tuple[str, str, str]]:
    (tmp / "afile").write_text("not a directory")
    (tmp / "adir").mkdir()
    missing = f"regcopilot_missing_{uuid.uuid4().hex[:8]}"
    return [
        ("no such database", f"{PG_BASE}/{missing}", f"database '{missing}' does not exist"),
        # This machine's PostgreSQL trusts loopback, so a wrong password cannot be refused
        # here; an unknown role is refused at the same step (authentication).
        ("refused role", f"postgresql://nobody_{uuid.uuid4().hex[:8]}@127.0.0.1:5432/postgres",
         "authentication to 127.0.0.1:5432/postgres failed"),
        ("nothing listens", f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/x",
         "connection refused"),
        ("sqlite path is a directory", f"sqlite:///{tmp}/adir", "it is a directory"),
        ("sqlite parent is a file", f"sqlite:///{tmp}/afile/users.db", "is a file"),
    ]


def test_a_bad_database_url_is_one_line_naming_it(tmp_path):
    port = free_port()
    for case, url, expected in bad_databases(tmp_path):
        env = fresh_env(DATABASE_URL=url, NEXTAUTH_SECRET=TEST_SECRET)
        done = run(tmp_path, env, "serve", "--port", str(port))
        said = lines(done.stderr) + lines(done.stdout)
        assert done.returncode == 1, (case, done.returncode, said)
        assert len(said) == 1, (case, said)
        assert said[0].startswith("error: DATABASE_URL=") and expected in said[0], (case, said)
        assert "Traceback" not in done.stderr and "hunter2" not in said[0], (case, said)
        assert not port_open(port), case


def test_a_taken_port_is_one_line_naming_port_and_the_env_var(tmp_path):
    env = fresh_env(DATABASE_URL=f"sqlite:///{tmp_path}/users.db", NEXTAUTH_SECRET=TEST_SECRET)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for how in (["--port", str(port)], []):
            done = run(tmp_path, {**env, "PORT": str(port)} if not how else env, "serve", *how)
            said = lines(done.stderr) + lines(done.stdout)
            assert done.returncode == 1 and len(said) == 1, said
            assert f"port {port} on 127.0.0.1 is already in use" in said[0], said
            assert "--port" in said[0] and "PORT=" in said[0] and "Traceback" not in said[0]


def test_first_start_announces_secret_and_token_once_and_monitor_reads_the_token(tmp_path):
    port = free_port()
    env = fresh_env(PORT=str(port))  # the README's defaults: ./data, SQLite, in-memory cache
    with served(tmp_path, env, port) as log:
        first = log.read_text()
        health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
        monitor = run(tmp_path, env, "monitor", f"http://127.0.0.1:{port}")
        monitor_json = run(tmp_path, env, "monitor", f"http://127.0.0.1:{port}", "--json")
        cost = run(tmp_path, env, "cost", "--url", f"http://127.0.0.1:{port}")
        wrong = run(tmp_path, env, "monitor", f"http://127.0.0.1:{port}", "--token", "wrong")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        no_token = run(elsewhere, env, "monitor", f"http://127.0.0.1:{port}")
        cost_refused = run(elsewhere, env, "cost", "--url", f"http://127.0.0.1:{port}")
    assert first.count("NEXTAUTH_SECRET not set") == 1, first
    # The server software is not named (uvicorn would say `server: uvicorn`); the date is given.
    assert "server" not in health.headers and "date" in health.headers, health.headers
    assert "generated a secret into data/.nextauth_secret" in first
    assert first.count("OBSERVABILITY_TOKEN not set") == 1, first
    assert "generated one into data/.observability_token" in first
    for name in (".nextauth_secret", ".observability_token"):
        assert stat.S_IMODE((tmp_path / "data" / name).stat().st_mode) == 0o600

    # Run from the directory serve runs in, with no token given: the generated one is used.
    assert monitor.returncode == 0 and "Result: OK" in monitor.stdout, monitor.stdout
    assert '"status": "ok"' in monitor_json.stdout
    assert cost.returncode == 0 and "Live counters from" in cost.stdout, cost.stdout + cost.stderr
    # A 401 is its own message and exit status, not "unreachable".
    for done in (wrong, no_token):
        assert done.returncode == 3, done.stdout
        assert "refused: wrong or missing token" in done.stdout
        assert "UNREACHABLE" not in done.stdout
    assert "was not accepted" in wrong.stdout
    assert "no token" in no_token.stdout and "OBSERVABILITY_TOKEN" in no_token.stdout
    assert cost_refused.returncode == 3 and "refused: wrong or missing token" in cost_refused.stderr

    # Later starts and every CLI command: nothing more about either.
    with served(tmp_path, env, port) as log:
        again = log.read_text()
        restarted = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5)
    assert "server" not in restarted.headers, restarted.headers
    users = run(tmp_path, env, "users", "list")
    assert users.returncode == 0, users.stderr
    for text in (again, users.stderr):
        assert "NEXTAUTH_SECRET" not in text and "OBSERVABILITY_TOKEN" not in text, text


def test_workers_share_the_generated_token(tmp_path, redis_prefix):
    """Each uvicorn worker loads the settings itself: all of them must accept the token, and
    the generated secret is still announced once."""
    port = free_port()
    env = fresh_env(PORT=str(port), REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=redis_prefix)
    with served(tmp_path, env, port, "--workers", "2") as log:
        token = (tmp_path / "data" / ".observability_token").read_text().strip()
        responses = [httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5,
                               headers={"Authorization": f"Bearer {token}"})
                     for _ in range(20)]
        text = log.read_text()
    assert {r.status_code for r in responses} == {200}, responses
    # Every worker leaves the server software unnamed too.
    assert not [r for r in responses if "server" in r.headers]
    assert text.count("NEXTAUTH_SECRET not set") == 1, text
