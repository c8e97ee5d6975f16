"""bench/run: every variant on the same data and workload, alternated, medians reported.

Variants (1,000 users with sessions, 64 connections, an authenticated GET rotating cookies):
  (R) raw         any GET on a raw ASGI callable answering (0)'s bytes: the server's own limit
  (0) bare        GET /api/health on a bare FastAPI app (one route): what a user writes without us
  (1) ceiling     GET /api/health on our server (no authentication)
  (2) tiered      GET /api/me, ours as shipped: near cache + Redis
  (2s) session    GET /api/auth/session on the same server: what every React page polls
  (3) redis-only  GET /api/me, near cache off: Redis on every request (the upstream design)
  (3b) upstream   GET /api/me on the upstream's design as its own tiny app: PyJWT decode, Redis
                  GET, json.loads on every request; asyncpg and SET EX 300 on a miss
  (4) no-cache    GET /api/me, the directory on every request
  (5) peer        GET /api/me on fastapi-users 15 (Redis token strategy + SQLAlchemy/asyncpg)
Then: the guide's workload model, 3 instances behind nginx, the in-memory tier at 10,000 users,
and a py-spy profile of (2).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import profile, report, seed
from bench.counters import PeerQueries, validations
from bench.infra import (
    LOAD_CORE,
    ROOT,
    SERVER_CORE,
    BenchPostgres,
    BenchRedis,
    Server,
    free_port,
)
from bench.loadgen import WrkResult, run_wrk
from bench.nginx import Nginx
from bench.workload import run_model

SECRET = "bench-nextauth-secret-" + "s" * 40
OBS_TOKEN = "bench-observability-token"
OUR_COOKIE = "regcopilot.session-token"
PEER_VENV = ROOT / "bench" / ".venv-peer"
TTL = 300
PARTS = ("variants", "profile", "model", "nginx", "memory")


@dataclass
class Options:
    smoke: bool
    users: int
    duration: float
    warmup: float
    rounds: int
    connections: int
    peer: bool
    parts: set[str]
    variants: set[str] | None
    model_seconds: float
    model_ttl: int
    model_event_seconds: float
    model_event_max_age: int
    model_event_users: int
    memory_users: int
    out: Path


@dataclass
class Variant:
    key: str
    label: str
    server: Server
    path: str
    tokens: Path
    cookie: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ours(self) -> bool:
        """Our server: its /api/observability counts validations and directory queries."""
        return self.key not in FOREIGN


# Variants served by other apps: no /api/observability to read counters from.
FOREIGN = frozenset({"raw", "bare", "upstream", "peer"})
# Served by no app of ours and answering without a session: no warm-up needed.
UNWARMED = frozenset({"raw", "bare", "ceiling"})


def parse_args(argv: list[str]) -> Options:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="seconds, tiny numbers (for CI)")
    p.add_argument("--users", type=int)
    p.add_argument("--duration", type=float, help="seconds per measured run")
    p.add_argument("--rounds", type=int)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--no-peer", action="store_true", help="leave out fastapi-users")
    p.add_argument("--only", help=f"comma-separated parts of {','.join(PARTS)} (default all;"
                   " the profile needs py-spy and is left out in smoke mode)")
    p.add_argument("--variants", help="comma-separated variant keys to run (default all: "
                   "raw,bare,ceiling,tiered,session,redis-only,upstream,no-cache,peer)")
    p.add_argument("--out", type=Path, help="results folder (default bench/results/<time>)")
    a = p.parse_args(argv)
    smoke = a.smoke
    parts = set(a.only.split(",")) if a.only else set(PARTS)
    if parts - set(PARTS):
        p.error(f"unknown part(s) {', '.join(sorted(parts - set(PARTS)))}")
    if not a.only and (smoke or profile.py_spy() is None):
        parts.discard("profile")
    peer_ready = (PEER_VENV / "bin" / "python").exists()
    chosen = set(a.variants.split(",")) if a.variants else None
    if a.no_peer or "variants" not in parts or (chosen is not None and "peer" not in chosen):
        peer = False
    elif smoke:
        peer = peer_ready  # optional in smoke: CI need not build the peer's venv
    else:
        if not peer_ready:
            subprocess.run([str(ROOT / "bench" / "setup-peer")], check=True)
        peer = True
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Options(
        smoke=smoke,
        users=a.users or (50 if smoke else 1000),
        duration=a.duration or (2 if smoke else 10),
        warmup=1 if smoke else 3,
        rounds=a.rounds or (1 if smoke else 5),
        connections=a.connections if not smoke else min(a.connections, 16),
        peer=peer,
        parts=parts,
        variants=chosen,
        model_seconds=6 if smoke else 60,
        model_ttl=3 if smoke else 5,
        # Event-driven run: TTL 1 s (300× compression), the 6 h max age is 72 s of wall time;
        # 240 s is 20 model hours, so most of it is past the first max age.
        model_event_seconds=12 if smoke else 240,
        model_event_max_age=3 if smoke else 72,
        model_event_users=50 if smoke else 200,
        memory_users=1000 if smoke else 10_000,
        out=a.out or ROOT / "bench" / "results" / stamp,
    )


# --- servers ------------------------------------------------------------------------------
def our_env(db_url: str, redis_url: str, prefix: str, mode: str, data: Path,
            ttl: int = TTL, max_age: int | None = None) -> dict[str, str]:
    extra = {} if max_age is None else {"CACHE_MAX_AGE_SECONDS": str(max_age)}
    return {
        **extra,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "NEXTAUTH_SECRET": SECRET,
        "NEXTAUTH_URL": "http://127.0.0.1:3000",
        "OBSERVABILITY_TOKEN": OBS_TOKEN,
        "BENCH_CACHE_MODE": mode,
        "CACHE_TTL_SECONDS": str(ttl),
        "SESSION_VALIDATION_INTERVAL_SECONDS": str(ttl),
        "DATA_DIR": str(data),
        "APP_ENV": "production",
        "LOG_LEVEL": "INFO",
    }


def our_server(name: str, env: dict[str, str], logs: Path) -> Server:
    """`regcopilot serve`, or for a benchmark variant the same server composed with the
    variant's classes (bench/variants.py)."""
    port = free_port()
    mode = env.get("BENCH_CACHE_MODE", "tiered")
    if mode == "tiered":
        argv = [str(ROOT / ".venv" / "bin" / "regcopilot"), "serve", "--host", "127.0.0.1",
                "--port", str(port)]
        return Server(name, argv, env, port, logs)
    argv = [str(ROOT / ".venv" / "bin" / "python"), "-m", "bench.variants", mode,
            "--host", "127.0.0.1", "--port", str(port)]
    return Server(name, argv, {"PYTHONPATH": str(ROOT), **env}, port, logs)


def plain_server(name: str, module: str, env: dict[str, str], logs: Path) -> Server:
    """An app of bench/ under the same uvicorn flags as `regcopilot serve` (uvloop, httptools,
    proxy headers, no access log), pinned to the same core."""
    port = free_port()
    argv = [str(ROOT / ".venv" / "bin" / "python"), "-m", "uvicorn", f"bench.{module}:app",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-access-log",
            "--proxy-headers", "--log-level", "info"]
    return Server(name, argv, {"PYTHONPATH": str(ROOT), **env}, port, logs)


def peer_server(db_url: str, redis_url: str, prefix: str, logs: Path) -> Server:
    port = free_port()
    argv = [str(PEER_VENV / "bin" / "python"), "-m", "uvicorn", "peer_app:app", "--app-dir",
            str(ROOT / "bench"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--no-access-log", "--log-level", "warning"]
    env = {"PEER_DATABASE_URL": db_url, "PEER_REDIS_URL": redis_url, "PEER_TOKEN_PREFIX": prefix}
    return Server("peer", argv, env, port, logs)


# --- one measured run -----------------------------------------------------------------------
def measure(v: Variant, opts: Options, redis: BenchRedis, peer_q: PeerQueries | None,
            pending_peer: list[tuple[dict[str, Any], int]]) -> dict[str, Any]:
    ours = v.ours
    before_q: int | dict[str, int] = 0
    if ours:
        before_q = validations(v.server.base, OBS_TOKEN)
    elif v.key == "peer":
        assert peer_q is not None
        settled = peer_q.settled()
        for rec, start in pending_peer:  # the previous peer run's count is settled now
            rec["dbQueries"] = settled - start
        pending_peer.clear()
        before_q = settled
    cmd0, per0 = redis.commands()
    cpu0 = v.server.cpu()
    res: WrkResult = run_wrk(v.server.base + v.path, v.tokens, v.cookie,
                             seconds=opts.duration, connections=opts.connections)
    cpu1 = v.server.cpu()
    cmd1, per1 = redis.commands()
    rec: dict[str, Any] = {
        "rps": round(res.rps, 1),
        "p50_ms": res.p50_ms,
        "p99_ms": res.p99_ms,
        "requests": res.requests,
        "errors": res.errors,
        "rssKiB": v.server.sample_rss(),
        "cpuUsPerRequest": round((sum(cpu1) - sum(cpu0)) * 1e6 / max(1, res.requests), 1),
        "userUsPerRequest": round((cpu1[0] - cpu0[0]) * 1e6 / max(1, res.requests), 1),
        "sysUsPerRequest": round((cpu1[1] - cpu0[1]) * 1e6 / max(1, res.requests), 1),
        "cpuBusy": round((sum(cpu1) - sum(cpu0)) / res.seconds, 3) if res.seconds else 0.0,
        # -2: the two INFO calls of the first reading are counted by the second
        "redisCommands": cmd1 - cmd0 - 2,
        "redisByCommand": {k: n - per0.get(k, 0) for k, n in per1.items()
                           if n - per0.get(k, 0) > 0 and k != "info"},
        "wrk": res.to_json() | {"raw": res.raw},
    }
    if ours:
        after = validations(v.server.base, OBS_TOKEN)
        assert isinstance(before_q, dict)
        rec["dbQueries"] = after["databaseQueries"] - before_q["databaseQueries"]
        rec["validations"] = after["total"] - before_q["total"]
        rec["backend"] = after["backend"]
        # A saturated core can make Redis calls miss their 50 ms timeout and trip the breaker;
        # such a run measured the fallback, not the design, and the report says so.
        rec["breakerTrips"] = v.server.log_path.read_text(errors="replace").count(
            "Redis cache failing")
    elif v.key == "peer":
        assert peer_q is not None and isinstance(before_q, int)
        peer_q.loaded()
        pending_peer.append((rec, before_q))
    return rec


def finish_run(rec: dict[str, Any]) -> None:
    n = max(1, rec["requests"])
    rec["dbPer1000"] = round(1000 * rec.get("dbQueries", 0) / n, 2)
    rec["redisPerRequest"] = round(rec["redisCommands"] / n, 3)


def median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def summarize_variant(v: Variant) -> dict[str, Any]:
    for rec in v.runs:
        finish_run(rec)
    return {
        "key": v.key,
        "label": v.label,
        "path": v.path,
        "rounds": len(v.runs),
        "rps": median(v.runs, "rps"),
        "rpsAll": [r["rps"] for r in v.runs],
        "p50_ms": median(v.runs, "p50_ms"),
        "p99_ms": median(v.runs, "p99_ms"),
        "p99All": [r["p99_ms"] for r in v.runs],
        "cpuUsPerRequest": median(v.runs, "cpuUsPerRequest"),
        "userUsPerRequest": median(v.runs, "userUsPerRequest"),
        "sysUsPerRequest": median(v.runs, "sysUsPerRequest"),
        "cpuBusy": median(v.runs, "cpuBusy"),
        "dbPer1000": median(v.runs, "dbPer1000"),
        "redisPerRequest": median(v.runs, "redisPerRequest"),
        "rssMiB": round(max(r["rssKiB"] for r in v.runs) / 1024, 1),
        "errors": sum(sum(r["errors"].values()) for r in v.runs),
        "breakerTrips": max((r.get("breakerTrips", 0) for r in v.runs), default=0),
        "runs": v.runs,
    }


# --- the whole thing ----------------------------------------------------------------------
def machine(opts: Options) -> dict[str, Any]:
    def cmd(*argv: str) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    versions = {}
    for pkg in ("regcopilot", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "redis",
                "hiredis", "asyncpg", "PyJWT", "cachetools", "pydantic", "orjson"):
        versions[pkg] = _version(pkg)
    peer_versions = {}
    if opts.peer:
        code = ("import importlib.metadata as m;print(' '.join(m.version(p) for p in "
                "('fastapi-users','fastapi-users-db-sqlalchemy','SQLAlchemy','asyncpg',"
                "'redis','uvicorn','fastapi')))")
        got = cmd(str(PEER_VENV / "bin" / "python"), "-c", code).split()
        names = ("fastapi-users", "fastapi-users-db-sqlalchemy", "SQLAlchemy", "asyncpg",
                 "redis", "uvicorn", "fastapi")
        peer_versions = dict(zip(names, got, strict=False))
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavgAtStart": Path("/proc/loadavg").read_text().split()[:3],
        "serverCore": SERVER_CORE,
        "loadCore": LOAD_CORE,
        "versions": versions,
        "peerVersions": peer_versions,
        "postgres": cmd("psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"),
        "redis": cmd("redis-server", "--version"),
        "wrk": cmd("wrk", "--version"),
        "nginx": cmd("nginx", "-v"),
    }


def _version(pkg: str) -> str:
    import importlib.metadata as md

    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return "?"


@dataclass
class Context:
    """What every part of a run shares: the seeded data, the run's Redis, where logs go."""

    opts: Options
    redis: BenchRedis
    pg: BenchPostgres
    users: list[seed.BenchUser]
    ours_db: str
    ours_tokens: Path
    logs: Path
    work: Path


def run(opts: Options) -> dict[str, Any]:
    started = time.monotonic()
    opts.out.mkdir(parents=True, exist_ok=True)
    logs = opts.out / "logs"
    logs.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="regcopilot-bench-"))
    redis = BenchRedis().start()
    pg = BenchPostgres()
    result: dict[str, Any] = {"options": {k: str(v) for k, v in vars(opts).items()},
                              "machine": machine(opts)}
    try:
        users = seed.make_users(opts.users)
        ours_db = asyncio.run(pg.create("ours"))
        asyncio.run(seed.seed_ours(ours_db, users))
        tokens = seed.write_tokens(work / "ours.tokens", seed.mint_ours(SECRET, 86_400, users))
        ctx = Context(opts, redis, pg, users, ours_db, tokens, logs, work)
        if "variants" in opts.parts:
            result.update(run_variants(ctx))
        if "profile" in opts.parts:
            result["profile"] = run_profile(ctx)
        if "model" in opts.parts:
            result["workloadModel"] = run_workload_model(ctx)
        if "nginx" in opts.parts:
            result["nginx"] = run_nginx(ctx)
        if "memory" in opts.parts:
            result["memory"] = run_memory(opts)
    finally:
        redis.stop()
        asyncio.run(pg.drop_all())
        shutil.rmtree(work, ignore_errors=True)
    result["elapsedSeconds"] = round(time.monotonic() - started, 1)
    return result


def run_variants(ctx: Context) -> dict[str, Any]:
    opts, redis, logs, work = ctx.opts, ctx.redis, ctx.logs, ctx.work
    servers: list[Server] = []

    def ours(name: str, mode: str) -> Server:
        s = our_server(name, our_env(ctx.ours_db, redis.url, f"bench:{name}:", mode,
                                     work / f"data-{name}"), logs)
        servers.append(s)
        return s.start()

    try:
        raw = plain_server("raw", "raw_app", {}, logs)
        bare = plain_server("bare", "bare_app", {}, logs)
        upstream = plain_server("upstream", "upstream_app", {
            "NEXTAUTH_SECRET": SECRET, "UPSTREAM_DATABASE_URL": ctx.ours_db,
            "UPSTREAM_REDIS_URL": redis.url, "UPSTREAM_KEY_PREFIX": "bench:upstream:",
            "UPSTREAM_COOKIE": OUR_COOKIE}, logs)
        servers.extend(s.start() for s in (raw, bare, upstream))
        tiered = ours("tiered", "tiered")
        redis_only = ours("redis-only", "redis-only")
        no_cache = ours("no-cache", "none")
        tokens = ctx.ours_tokens
        variants = [
            Variant("raw", "(R) raw ASGI app: the server's own limit", raw, "/api/health",
                    tokens, OUR_COOKIE),
            Variant("bare", "(0) bare FastAPI app: one route, no auth", bare, "/api/health",
                    tokens, OUR_COOKIE),
            Variant("ceiling", "(1) ceiling: /api/health, no auth", tiered, "/api/health",
                    tokens, OUR_COOKIE),
            Variant("tiered", "(2) ours: near cache + Redis", tiered, "/api/me",
                    tokens, OUR_COOKIE),
            Variant("session", "(2s) ours: GET /api/auth/session, near cache + Redis", tiered,
                    "/api/auth/session", tokens, OUR_COOKIE),
            Variant("redis-only", "(3) ours, near cache off: Redis only (upstream design)",
                    redis_only, "/api/me", tokens, OUR_COOKIE),
            Variant("upstream", "(3b) upstream design as its own app: JWT + Redis GET + JSON",
                    upstream, "/api/me", tokens, OUR_COOKIE),
            Variant("no-cache", "(4) ours, no cache: directory every request", no_cache,
                    "/api/me", tokens, OUR_COOKIE),
        ]
        if opts.variants is not None:
            variants = [v for v in variants if v.key in opts.variants]
        peer_q: PeerQueries | None = None
        if opts.peer:
            peer_db = asyncio.run(ctx.pg.create("peer"))
            subprocess.run([str(PEER_VENV / "bin" / "python"),
                            str(ROOT / "bench" / "peer_app.py"), "init"],
                           check=True, env={**os.environ, "PEER_DATABASE_URL": peer_db})
            asyncio.run(seed.seed_peer(peer_db, ctx.users))
            prefix = "bench:peer:fastapi_users_token:"
            peer_tokens = seed.write_tokens(work / "peer.tokens",
                                            seed.mint_peer(redis.url, prefix, ctx.users))
            peer = peer_server(peer_db, redis.url, prefix, logs)
            servers.append(peer.start())
            variants.append(Variant("peer", "(5) fastapi-users 15: Redis tokens + SQLAlchemy",
                                    peer, "/api/me", peer_tokens, "fastapiusersauth"))
            peer_q = PeerQueries(ctx.pg, peer_db)
        for s in servers:
            s.wait_ready()
        tiered_started = time.monotonic()

        # Warm every server once (caches filled, connections opened), then alternate.
        for v in variants:
            if v.key in UNWARMED:
                continue
            run_wrk(v.server.base + v.path, v.tokens, v.cookie, seconds=opts.warmup,
                    connections=opts.connections)
            if v.key == "peer" and peer_q is not None:
                peer_q.loaded()
        pending_peer: list[tuple[dict[str, Any], int]] = []
        for r in range(opts.rounds):
            for v in variants:
                rec = measure(v, opts, redis, peer_q, pending_peer)
                rec["round"] = r + 1
                v.runs.append(rec)
                print(f"round {r + 1} {v.key:10} {rec['rps']:9.1f} req/s  "
                      f"p50 {rec['p50_ms']:.2f} ms  p99 {rec['p99_ms']:.2f} ms", flush=True)
        if pending_peer and peer_q is not None:
            settled = peer_q.settled()
            for rec, start in pending_peer:
                rec["dbQueries"] = settled - start
        # Over the tiered server's whole life: directory queries per user per TTL.
        life = validations(tiered.base, OBS_TOKEN)
        elapsed = time.monotonic() - tiered_started
        return {
            "tieredLifetime": {
                "seconds": round(elapsed, 1),
                "validations": life["total"],
                "dbQueries": life["databaseQueries"],
                "queriesPerUserPerTtl": round(
                    life["databaseQueries"] / opts.users / max(1.0, elapsed / TTL), 3),
            },
            "variants": [summarize_variant(v) for v in variants],
        }
    finally:
        for s in servers:
            s.stop()


def run_profile(ctx: Context) -> dict[str, Any]:
    """Samples (0) on the bare app, then (1) and (2) on one of our servers: (1) against (0) is
    what our app costs before authentication, (2) against (1) what authentication costs."""
    opts, tokens = ctx.opts, ctx.ours_tokens
    s = our_server("profiled", our_env(ctx.ours_db, ctx.redis.url, "bench:profiled:", "tiered",
                                       ctx.work / "data-profiled"), ctx.logs).start()
    bare = plain_server("bare-profiled", "bare_app", {}, ctx.logs).start()
    try:
        s.wait_ready()
        bare.wait_ready()
        run_wrk(s.base + "/api/me", tokens, OUR_COOKIE, seconds=opts.warmup,
                connections=opts.connections)
        seconds = min(opts.duration, 15)
        out: dict[str, Any] = {}
        for key, server, path in (("bare", bare, "/api/health"), ("ceiling", s, "/api/health"),
                                  ("tiered", s, "/api/me")):
            raw = opts.out / f"profile-{key}.txt"
            url = server.base + path
            _, load = profile.record_during(
                server.pid, seconds, raw,
                lambda url=url: run_wrk(url, tokens, OUR_COOKIE, seconds=seconds + 1,
                                        connections=opts.connections),
            )
            summary = profile.summarize(raw)
            summary["rpsWhileSampled"] = round(load.rps, 1) if load else None
            summary["raw"] = raw.name
            out[key] = summary
        out["extraPerRequest"] = profile.difference(
            opts.out / "profile-tiered.txt", out["tiered"]["rpsWhileSampled"],
            opts.out / "profile-ceiling.txt", out["ceiling"]["rpsWhileSampled"],
        )
        out["oursOverBare"] = profile.difference(
            opts.out / "profile-ceiling.txt", out["ceiling"]["rpsWhileSampled"],
            opts.out / "profile-bare.txt", out["bare"]["rpsWhileSampled"],
        )
        return out
    finally:
        bare.stop()
        s.stop()


def run_workload_model(ctx: Context) -> dict[str, Any]:
    """The guide's model twice: under the TTL alone (max age = TTL, as before freshness from
    events), then event-driven (the default max age, compressed like the TTL)."""
    opts = ctx.opts
    tokens = seed.mint_ours(SECRET, 86_400, ctx.users)
    runs = (("ttl", opts.model_ttl, opts.model_ttl, opts.model_seconds, tokens),
            ("events", 1, opts.model_event_max_age, opts.model_event_seconds,
             tokens[:opts.model_event_users]))
    out: dict[str, Any] = {}
    for name, ttl, max_age, seconds, toks in runs:
        env = our_env(ctx.ours_db, ctx.redis.url, f"bench:model-{name}:", "tiered",
                      ctx.work / f"data-model-{name}", ttl=ttl, max_age=max_age)
        s = our_server(f"model-{name}", env, ctx.logs).start().wait_ready()
        try:
            res = run_model(s.base, OBS_TOKEN, OUR_COOKIE, toks, ttl_s=ttl, seconds=seconds,
                            max_age_s=max_age)
            out[name] = res.to_json()
        finally:
            s.stop()
    return out


def run_nginx(ctx: Context) -> dict[str, Any]:
    opts, redis, tokens = ctx.opts, ctx.redis, ctx.ours_tokens
    instances = [our_server(f"cluster-{i}", our_env(ctx.ours_db, redis.url, "bench:cluster:",
                                                   "tiered", ctx.work / f"data-cluster-{i}"),
                            ctx.logs)
                 for i in range(3)]
    proxy: Nginx | None = None
    try:
        for s in instances:
            s.start()
        for s in instances:
            s.wait_ready()
        proxy = Nginx([s.port for s in instances]).start()
        url = proxy.base + "/api/me"
        cold = run_wrk(url, tokens, OUR_COOKIE, seconds=opts.warmup, connections=opts.connections)
        cmd0, _ = redis.commands()
        res = run_wrk(url, tokens, OUR_COOKIE, seconds=opts.duration,
                      connections=opts.connections)
        cmd1, _ = redis.commands()
        totals = validations(instances[0].base, OBS_TOKEN)  # cluster totals from Redis
        requests = cold.requests + res.requests
        return {
            "instances": len(instances),
            "rps": round(res.rps, 1),
            "p50_ms": res.p50_ms,
            "p99_ms": res.p99_ms,
            "errors": sum(res.errors.values()) + sum(cold.errors.values()),
            "requests": requests,
            "validations": totals["total"],
            "dbQueries": totals["databaseQueries"],
            "dbQueriesPerUser": round(totals["databaseQueries"] / len(ctx.users), 3),
            "redisPerRequest": round((cmd1 - cmd0 - 2) / max(1, res.requests), 3),
            "rssMiB": [round(s.sample_rss() / 1024, 1) for s in instances],
            "breakerTrips": sum(s.log_path.read_text(errors="replace").count(
                "Redis cache failing") for s in instances),
        }
    finally:
        if proxy is not None:
            proxy.stop()
        for s in instances:
            s.stop()


def run_memory(opts: Options) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.memory", str(opts.memory_users)],
                         cwd=ROOT, capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    result = run(opts)
    (opts.out / "results.json").write_text(json.dumps(result, indent=2))
    md = report.markdown(result)
    (opts.out / "results.md").write_text(md)
    print(md)
    print(f"\nwritten: {opts.out}/results.json, results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
