"""The benchmark harness in smoke mode (seconds, 50 users), so it cannot rot unnoticed.

Only that it runs end to end and every variant served requests is checked here; speed goals
belong to the full `bench/run`, never to a timed test."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support import repo_root

pytestmark = [pytest.mark.xdist_group("bench"), pytest.mark.slow]

OURS = ("raw", "bare", "ceiling", "tiered", "session", "redis-only", "upstream", "no-cache")


def test_bench_smoke_runs_every_variant(tmp_path: Path) -> None:
    root = repo_root()
    peer = (root / "bench" / ".venv-peer" / "bin" / "python").exists()
    out = tmp_path / "results"
    proc = subprocess.run(
        [str(root / "bench" / "run"), "--smoke", "--out", str(out)],
        cwd=root, capture_output=True, text=True, timeout=240, env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / "results.json").read_text())

    variants = {v["key"]: v for v in result["variants"]}
    expected = (*OURS, "peer") if peer else OURS
    assert set(variants) == set(expected)
    for key in expected:
        v = variants[key]
        assert v["rps"] > 0, key
        assert v["errors"] == 0, (key, v["runs"][0]["errors"])
        # The server's CPU, split: user time is always spent; a server answering on sockets
        # always makes the kernel work too.
        run = v["runs"][0]
        assert run["userUsPerRequest"] > 0 and run["sysUsPerRequest"] > 0, key
        assert abs(run["userUsPerRequest"] + run["sysUsPerRequest"]
                   - run["cpuUsPerRequest"]) < 0.2, key
    # The switches do what they say: no directory query on a warm cache, one per request
    # without it, a Redis GET per request with the near cache off (fewer when concurrent
    # requests for one user share a GET, or a saturated core trips the breaker for a moment).
    assert variants["no-cache"]["dbPer1000"] > 900
    assert variants["tiered"]["dbPer1000"] < 50
    assert variants["redis-only"]["redisPerRequest"] > 0.5
    assert variants["tiered"]["redisPerRequest"] < 0.1
    # The upstream design reads Redis on every request; the bare app never touches it.
    assert variants["upstream"]["redisPerRequest"] > 0.5
    # (The other servers' background heartbeats land in every window: a few per thousand.)
    assert variants["bare"]["redisPerRequest"] < 0.05

    assert result["nginx"]["rps"] > 0 and result["nginx"]["errors"] == 0
    assert result["workloadModel"]["ttl"]["validations"] > 0
    assert result["workloadModel"]["events"]["validations"] > 0
    assert result["memory"]["validationCache"]["tracemalloc_kib"] > 0
    assert (out / "results.md").read_text().startswith("# Benchmark results")
    assert "Ratios of req/s round by round" in (out / "results.md").read_text()


def test_bench_ab_serves_both_versions_and_leaves_no_worktree(tmp_path: Path) -> None:
    """bench/ab.py: the revision and the working tree both answer under load, and the
    temporary worktree of the revision is gone afterwards."""
    root = repo_root()

    def worktrees() -> str:
        return subprocess.run(["git", "worktree", "list", "--porcelain"], cwd=root,
                              capture_output=True, text=True, check=True).stdout

    before = worktrees()
    proc = subprocess.run(
        [str(root / ".venv" / "bin" / "python"), "-m", "bench.ab", "--rounds", "1",
         "--duration", "1", "--users", "20", "--paths", "/api/me"],
        cwd=root, capture_output=True, text=True, timeout=240, env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    medians = proc.stdout.split("medians of", 1)[1].splitlines()
    for name in ("R /api/health", "A /api/me", "B /api/me"):
        line = next(x for x in medians if x.startswith(name))
        assert float(line.split()[2]) > 0, line  # req/s
    assert "B / A round by round" in proc.stdout
    assert worktrees() == before


def test_bench_opcodes_counts_the_request_path_and_names_our_functions() -> None:
    """bench.opcodes: the raw app's request runs fewer bytecodes than ours on /api/me, and the
    per-function list of ours names the session check (what the count is read for)."""
    root = repo_root()

    def run(case: str) -> str:
        proc = subprocess.run(
            [str(root / ".venv" / "bin" / "python"), "-m", "bench.opcodes", "--case", case,
             "--requests", "20", "--top", "60"],
            cwd=root, capture_output=True, text=True, timeout=120, env=os.environ.copy())
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    def total(out: str) -> int:
        first = next(x for x in out.splitlines() if "bytecodes per request" in x)
        return int(first.split(":")[1].split()[0].replace(",", ""))

    raw, me = run("raw"), run("me")
    assert 0 < total(raw) < total(me)
    assert "regcopilot/web/middleware.py:guard" in me
    assert "regcopilot/web/" not in raw.split("bytecodes per request", 1)[1]


def test_round_ratios_pair_each_round_with_its_own_reference() -> None:
    """bench/report.py: a host that slows down during a run moves (R) and the variant of the
    same round together; the round-by-round ratio pairs them, where the ratio of medians can
    take the variant's slow round against the reference's fast one."""
    from bench.report import ratios, round_ratios

    result = {"variants": [
        {"key": "raw", "rps": 40.0, "rpsAll": [50.0, 40.0, 30.0]},
        {"key": "tiered", "rps": 20.0, "rpsAll": [40.0, 20.0, 15.0]},
    ]}
    assert ratios(result)["tiered/raw"] == 0.5
    assert round_ratios(result)["tiered/raw"] == (0.5, 0.5, 0.8)
