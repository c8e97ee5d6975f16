"""Two versions of our code side by side: the working tree's server (B) against a git revision's
(A, checked out in a temporary worktree and put first on PYTHONPATH), with (R) for scale, all
served as bench/run serves (tiered), loaded by the same wrk, rounds alternated.

    .venv/bin/python -m bench.ab [--base HEAD] [--paths /api/me,/api/auth/session]
                                 [--rounds 5] [--duration 8] [--users 1000]

Why a tool of its own: on one machine, rounds of the same server differ by up to 12 % between
runs, more than most changes worth making; within one run, alternated with its base, a change
of 1 µs a request shows. Prints per round, then medians of req/s, the ratio to (R), user and
system CPU µs per request of the server process, and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench import seed
from bench.harness import OUR_COOKIE, SECRET, our_env, our_server, plain_server
from bench.infra import ROOT, BenchPostgres, BenchRedis, Server, cpu_times
from bench.loadgen import run_wrk
from bench.report import spread

CONNECTIONS = 64


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="HEAD", help="git revision served as (A)")
    p.add_argument("--paths", default="/api/me,/api/auth/session")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--users", type=int, default=1000, help="signed-in users taking turns")
    a = p.parse_args()
    paths = [x for x in a.paths.split(",") if x]
    if a.rounds < 1 or a.duration < 1 or a.users < 1 or not paths:
        p.error("--rounds, --duration and --users must be at least 1, --paths not empty")
    work = Path(tempfile.mkdtemp(prefix="regcopilot-ab-"))
    tree = work / "base"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), a.base], cwd=ROOT,
                   check=True)
    redis, pg = BenchRedis().start(), BenchPostgres()
    servers: dict[str, Server] = {}
    try:
        users = seed.make_users(a.users)
        db = asyncio.run(pg.create("ab"))
        asyncio.run(seed.seed_ours(db, users))
        tokens = seed.write_tokens(work / "ours.tokens", seed.mint_ours(SECRET, 86_400, users))
        logs = work / "logs"
        logs.mkdir()
        servers["R"] = plain_server("raw", "raw_app", {}, logs)
        for name, extra in (("A", {"PYTHONPATH": str(tree / "src")}), ("B", {})):
            env = our_env(db, redis.url, f"bench:ab:{name}:", "tiered", work / f"data-{name}")
            servers[name] = our_server(name, env | extra, logs)
        for s in servers.values():
            s.start()
        for s in servers.values():
            s.wait_ready()
        plan = [("R", "/api/health")] + [(n, path) for path in paths for n in ("A", "B")]
        for n, path in plan:  # warm: caches filled, connections open
            run_wrk(servers[n].base + path, tokens, OUR_COOKIE, seconds=min(2, a.duration),
                    connections=CONNECTIONS)
        runs: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
        for r in range(a.rounds):
            for n, path in plan:
                pid = servers[n].pid
                user0, sys0 = cpu_times(pid)
                w = run_wrk(servers[n].base + path, tokens, OUR_COOKIE, seconds=a.duration,
                            connections=CONNECTIONS)
                user1, sys1 = cpu_times(pid)
                k = max(1, w.requests)
                row = (w.rps, (user1 - user0) * 1e6 / k, (sys1 - sys0) * 1e6 / k, w.p99_ms)
                runs.setdefault((n, path), []).append(row)
                print(f"round {r + 1} {n} {path:20} {row[0]:8.0f} req/s  user {row[1]:5.1f} "
                      f"sys {row[2]:5.1f} µs  p99 {row[3]:.2f} ms", flush=True)
        raw = statistics.median(x[0] for x in runs[("R", "/api/health")])
        print(f"\nmedians of {a.rounds} rounds; (A) = {a.base}, (B) = the working tree")
        for (n, path), rows in runs.items():
            rps = statistics.median(x[0] for x in rows)
            print(f"{n} {path:20} {rps:8.0f} req/s  {rps / raw:.3f} × (R)  user "
                  f"{statistics.median(x[1] for x in rows):5.1f} sys "
                  f"{statistics.median(x[2] for x in rows):5.1f} µs  p99 "
                  f"{statistics.median(x[3] for x in rows):.2f} ms")
        # A and B of one path run back to back in every round: their ratio round by round is
        # the comparison a drifting host disturbs least.
        print("\nB / A round by round (median, then the lowest and highest round)")
        for path in paths:
            each = [b[0] / x[0] for x, b in zip(runs[("A", path)], runs[("B", path)],
                                                strict=True) if x[0]]
            if each:
                m, lo, hi = spread(each)
                print(f"{path:20} {m:.3f} ({lo:.3f}–{hi:.3f})")
    finally:
        for s in servers.values():
            s.stop()
        redis.stop()
        asyncio.run(pg.drop_all())
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                       check=False)


if __name__ == "__main__":
    main()
