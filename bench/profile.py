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
                              "--nonblocking", "--format", "raw", "--output", str(out)])
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


def _short(path: str) -> str:
    for mark in ("site-packages/", "/src/", "/lib/python3.11/"):
        if mark in path:
            return path.split(mark, 1)[1]
    return path


def _package(path: str) -> str:
    short = _short(path)
    if short.startswith("regcopilot/"):
        parts = short.split("/")
        return "/".join(parts[:2]) if len(parts) > 2 else short
    return short.split("/", 1)[0].removesuffix(".py")


def parse_frame(frame: str) -> tuple[str, str]:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip(), "?"
    return f"{m['func']} ({_short(m['file'])})", m["file"]


def summarize(raw: Path, top: int = 25) -> dict[str, Any]:
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [parse_frame(f) for f in stack.split(";") if f.strip()]
        frames = [f for f in frames if not f[0].startswith("process ")]
        if not frames:
            continue
        for name in {name for name, _ in frames}:
            inclusive[name] += n
        leaf_name, leaf_file = frames[-1]
        self_time[leaf_name] += n
        by_package[_package(leaf_file)] += n

    def pct(c: Counter[str]) -> list[dict[str, Any]]:
        return [{"name": k, "percent": round(100 * v / total, 1)} for k, v in c.most_common(top)]

    return {
        "samples": total,
        "inclusive": pct(inclusive),
        "self": pct(self_time),
        "selfByPackage": pct(by_package),
    }
