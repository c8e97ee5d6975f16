"""wrk, pinned to the load core, rotating session cookies (bench/sessions.lua)."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.infra import LOAD_CORE, ROOT, pinned

LUA = ROOT / "bench" / "sessions.lua"
MARK = "WRK_JSON "


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    errors: dict[str, int]
    raw: str

    def to_json(self) -> dict:
        return asdict(self)


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, tokens: Path, cookie: str, *, seconds: float, connections: int,
            threads: int = 1, core: str = LOAD_CORE) -> WrkResult:
    argv = pinned(core, [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
        "--timeout", "5s", "-s", str(LUA), url, "--", str(tokens), cookie,
    ])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith(MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out.stdout}\n{out.stderr}")
    body = json.loads(line[len(MARK):])
    lat = body["latency_us"]
    secs = body["duration_us"] / 1e6
    return WrkResult(
        requests=body["requests"],
        seconds=secs,
        rps=body["requests"] / secs if secs else 0.0,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        mean_ms=lat["mean"] / 1000,
        errors=body["errors"],
        raw=out.stdout,
    )
