"""Where the server's time goes under load: py-spy samples the server process (from the load
core) while wrk drives it, and the collapsed stacks are summed per function and per package."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from bench.infra import LOAD_CORE, ROOT, pinned

PEER_SPY = ROOT / "bench" / ".venv-peer" / "bin" / "py-spy"
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    if PEER_SPY.exists():
        return str(PEER_SPY)
    return shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path, rate: int = 200) -> Path:
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy not found (bench/setup-peer installs it)")
    argv = pinned(LOAD_CORE, [exe, "record", "--pid", str(pid), "--duration",
                              str(max(1, round(seconds))), "--rate", str(rate),
                              "--format", "raw", "--output", str(out)])
    subprocess.run(argv, check=True, capture_output=True, timeout=seconds + 60)
    return out


def record_during(pid: int, seconds: float, out: Path, load: Any) -> tuple[Path, Any]:
    """Sample for `seconds` while `load()` runs (started first so the sampler sees load)."""
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.setdefault("load", load()))
    t.start()
    record(pid, seconds, out)
    t.join()
    return out, result.get("load")


def short_path(path: str) -> str:
    for mark in ("site-packages/", "/src/", "/lib/python3.11/"):
        if mark in path:
            return path.split(mark, 1)[1]
    return path


def _package(path: str) -> str:
    short = short_path(path)
    if short.startswith("regcopilot/"):
        parts = short.split("/")
        return "/".join(parts[:2]) if len(parts) > 2 else short
    return short.split("/", 1)[0].removesuffix(".py")


def parse_frame(frame: str) -> tuple[str, str]:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip(), "?"
    return f"{m['func']} ({short_path(m['file'])})", m["file"]


def _stacks(raw: Path) -> tuple[int, list[tuple[list[tuple[str, str]], int]]]:
    total, stacks = 0, []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [parse_frame(f) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f[0].startswith("process ")]
        if frames:
            stacks.append((frames, n))
    return total, stacks


def _inclusive(stacks: list[tuple[list[tuple[str, str]], int]]) -> Counter[str]:
    inclusive: Counter[str] = Counter()
    for frames, n in stacks:
        for name in {name for name, _ in frames}:
            inclusive[name] += n
    return inclusive


def summarize(raw: Path, top: int = 25) -> dict[str, Any]:
    """Shares of busy samples. Frames present in (nearly) every sample — the process's
    start-up chain down to the event loop — are left out of the inclusive list."""
    total, stacks = _stacks(raw)
    inclusive = _inclusive(stacks)
    self_time: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    for frames, n in stacks:
        leaf_name, leaf_file = frames[-1]
        self_time[leaf_name] += n
        by_package[_package(leaf_file)] += n
    trunk = {k for k, v in inclusive.items() if v >= 0.99 * total}
    for k in trunk:
        del inclusive[k]

    def pct(c: Counter[str]) -> list[dict[str, Any]]:
        return [{"name": k, "percent": round(100 * v / total, 1)} for k, v in c.most_common(top)]

    return {
        "samples": total,
        "inclusive": pct(inclusive),
        "self": pct(self_time),
        "selfByPackage": pct(by_package),
    }


def _self(stacks: list[tuple[list[tuple[str, str]], int]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for frames, n in stacks:
        out[frames[-1][0]] += n
    return out


WATCH = ("SessionMiddleware._authenticate", "SessionValidator.validate", "SessionTokens.decode",
         "RevocationList.is_revoked", "ValidationCache.peek", "SessionValidator._record",
         "read_cookie", "solve_dependencies", "serialize_response", "current_user",
         "HTTPConnection.query_params", "_IncludedRouter._match", "FastEndpoint.__call__",
         "APIRouter.__call__", "Router.__call__")


def difference(raw_a: Path, rps_a: float | None, raw_b: Path, rps_b: float | None,
               top: int = 20) -> dict[str, list[dict[str, Any]]]:
    """Per-request CPU (µs) by function in A and B, largest A − B first. A saturated
    single-threaded server spends 1/rps of a second per request; a function's share of the
    samples is its share of that. `self` sums to the whole difference; `watch` gives the
    inclusive cost of the functions the hot path is made of."""
    if not rps_a or not rps_b:
        return {"self": [], "watch": []}
    total_a, stacks_a = _stacks(raw_a)
    total_b, stacks_b = _stacks(raw_b)

    def rows(ca: Counter[str], cb: Counter[str]) -> list[dict[str, Any]]:
        out = []
        for k in set(ca) | set(cb):
            a = ca.get(k, 0) / total_a * 1e6 / rps_a
            b = cb.get(k, 0) / total_b * 1e6 / rps_b
            out.append({"name": k, "us": round(a, 1), "baselineUs": round(b, 1),
                        "extraUs": round(a - b, 1)})
        return sorted(out, key=lambda r: r["extraUs"], reverse=True)

    whole = {"name": "(whole request)", "us": round(1e6 / rps_a, 1),
             "baselineUs": round(1e6 / rps_b, 1), "extraUs": round(1e6 / rps_a - 1e6 / rps_b, 1)}
    inclusive = rows(_inclusive(stacks_a), _inclusive(stacks_b))
    watch = [r for r in inclusive if r["name"].split(" (")[0] in WATCH]
    return {"self": [whole, *rows(_self(stacks_a), _self(stacks_b))[:top]], "watch": watch}
