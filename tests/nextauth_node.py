"""The real next-auth v4 package under Node, for the interop tests: its jwt module's encode,
decode and cookie chunking (tests/node/nextauth.js), and a stand-in Node tier
(tests/node/node_tier.js). tests/node/setup.sh installs the packages into a throwaway folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port, port_open, repo_root, wait_until

NODE_DIR = repo_root() / "tests" / "node"
MISSING_NODE = (
    "The NextAuth interop tests run the real next-auth package under Node.js: install Node.js "
    "18+ with npm (Debian: apt-get install nodejs npm, which scripts/system-deps.sh does as root)"
)


class NextAuthNode:
    def __init__(self, modules: Path) -> None:
        self.env = {**os.environ, "NODE_PATH": str(modules)}

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        done = subprocess.run(
            ["node", str(NODE_DIR / "nextauth.js")], input=json.dumps(request), env=self.env,
            capture_output=True, text=True, timeout=30, check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def encode(self, token: dict[str, Any], secret: str, max_age: int = 3600) -> str:
        return self._call({"op": "encode", "token": token, "secret": secret, "maxAge": max_age})[
            "token"
        ]

    def decode(self, token: str, secret: str) -> dict[str, Any]:
        """The payload, or {"error": ...} when next-auth refuses the token."""
        answer = self._call({"op": "decode", "token": token, "secret": secret})
        return answer["payload"] if "payload" in answer else answer

    def chunk(self, name: str, value: str) -> list[tuple[str, str]]:
        cookies = self._call({"op": "chunk", "name": name, "value": value})["cookies"]
        return [(c["name"], c["value"]) for c in cookies]

    def start_tier(self, *, secret: str, redis_url: str, prefix: str) -> NodeTier:
        port = free_port()
        env = {**self.env, "PORT": str(port), "NEXTAUTH_SECRET": secret,
               "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": prefix}
        proc = subprocess.Popen(["node", str(NODE_DIR / "node_tier.js")], env=env)
        tier = NodeTier(proc, port)
        try:
            wait_until(lambda: port_open(port) or proc.poll() is not None, timeout=20,
                       what="the Node tier listening")
            assert proc.poll() is None, "the Node tier exited at start"
        except BaseException:
            tier.stop()
            raise
        return tier


class NodeTier:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def install() -> NextAuthNode:
    """Run tests/node/setup.sh (cached per package.json version); fail clearly without Node."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail(MISSING_NODE, pytrace=False)
    done = subprocess.run(
        [str(NODE_DIR / "setup.sh")], capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"tests/node/setup.sh failed:\n{done.stderr[-3000:]}", pytrace=False)
    return NextAuthNode(Path(done.stdout.strip().splitlines()[-1]) / "node_modules")
