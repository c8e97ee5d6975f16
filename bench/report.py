"""The Markdown summary of a run (results.md); the JSON beside it has every raw figure."""

from __future__ import annotations

import statistics
from typing import Any

# (R), a raw ASGI callable on the same server, is the physical limit (issue 24); (0), a bare
# FastAPI app, is what a user would write without us.
GOALS = (
    ("(1) ≥ 0.85 × (R)", "ceiling", "raw", 0.85),
    ("(2) ≥ 0.7 × (R)", "tiered", "raw", 0.7),
    ("(2s) ≥ 0.7 × (R)", "session", "raw", 0.7),
    ("(1) ≥ 0.95 × (0)", "ceiling", "bare", 0.95),
    ("(2) ≥ 0.85 × (0)", "tiered", "bare", 0.85),
    ("(2) ≥ 2.5 × (3b)", "tiered", "upstream", 2.5),
    ("(2) ≥ 8 × (5)", "tiered", "peer", 8.0),
    ("(2) ≥ 2.5 × (3)", "tiered", "redis-only", 2.5),
)
P99_GOAL_MS = 5.0
P99_ROUTES = ("tiered", "session")


def _by_key(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["key"]: v for v in result.get("variants", [])}


# (a, b): a's throughput as a multiple of b's.
PAIRS = (("ceiling", "raw"), ("tiered", "raw"), ("session", "raw"), ("bare", "raw"),
         ("session", "bare"), ("ceiling", "bare"), ("tiered", "bare"), ("tiered", "upstream"),
         ("tiered", "ceiling"),
         ("tiered", "peer"), ("redis-only", "tiered"), ("tiered", "redis-only"),
         ("tiered", "no-cache"))


def ratios(result: dict[str, Any]) -> dict[str, float]:
    v = _by_key(result)
    out = {}
    for a, b in PAIRS:
        if a in v and b in v and v[b]["rps"]:
            out[f"{a}/{b}"] = round(v[a]["rps"] / v[b]["rps"], 2)
    return out


def round_ratios(result: dict[str, Any]) -> dict[str, tuple[float, float, float]]:
    """The same ratios taken round by round (variants of one round run back to back): the
    median of the rounds' ratios, then the lowest and the highest. On a host whose speed
    drifts during a run, the spread says how far one run's ratio of medians can be trusted."""
    v = _by_key(result)
    out = {}
    for a, b in PAIRS:
        ra, rb = v.get(a, {}).get("rpsAll"), v.get(b, {}).get("rpsAll")
        if ra and rb and len(ra) == len(rb) and all(rb):
            each = [x / y for x, y in zip(ra, rb, strict=True)]
            m, lo, hi = spread(each)
            out[f"{a}/{b}"] = (round(m, 2), round(lo, 2), round(hi, 2))
    return out


def spread(each: list[float]) -> tuple[float, float, float]:
    """Ratios taken round by round: their median, then the lowest and the highest."""
    return statistics.median(each), min(each), max(each)


def cpu_ratios(result: dict[str, Any]) -> dict[str, float]:
    """The same ratios as capacities: 1 / server CPU per request."""
    v = _by_key(result)
    out = {}
    for a, b in PAIRS:
        ca, cb = v.get(a, {}).get("cpuUsPerRequest"), v.get(b, {}).get("cpuUsPerRequest")
        if ca and cb:
            out[f"{a}/{b}"] = round(cb / ca, 2)
    return out


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    o = result["options"]
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {m['nproc']} cores, {m['cpu']}, Linux {m['kernel']}, Python {m['python']}; "
        f"load average at start {' '.join(m['loadavgAtStart'])}. Server on core "
        f"{m['serverCore']}, wrk on core {m['loadCore']}; PostgreSQL and Redis unpinned.",
        f"Workload: {o['users']} users with sessions, {o['connections']} connections, "
        f"{o['rounds']} round(s) of {o['duration']} s per variant, variants alternated; "
        "medians shown.",
        "",
        "| variant | req/s | p50 ms | p99 ms | server CPU µs / req (user + system) | "
        "directory queries / 1,000 req | Redis cmds / req | RSS MiB | req/s per round |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for v in result.get("variants", []):
        per_round = ", ".join(f"{x:,.0f}" for x in v["rpsAll"])
        lines.append(
            f"| {v['label']} | {v['rps']:,.0f} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | "
            f"{v.get('cpuUsPerRequest', 0):,.0f} ({v.get('userUsPerRequest', 0):,.1f} + "
            f"{v.get('sysUsPerRequest', 0):,.1f}) | {v['dbPer1000']:.2f} | "
            f"{v['redisPerRequest']:.3f} | {v['rssMiB']:.0f} | {per_round} |"
        )
    lines += [
        "",
        "Server CPU µs / req is the server process's own user + system CPU per request "
        "(/proc/PID/stat): it stays put when other programs take the core, where req/s does "
        "not. The database's and Redis's own CPU is not in it.",
    ]
    errors = sum(v["errors"] for v in result.get("variants", []))
    if errors:
        lines += ["", f"**{errors} wrk errors (non-2xx, timeouts or socket errors)**"]
    for v in result.get("variants", []):
        if v.get("breakerTrips"):
            lines += ["", f"**{v['label']}: the Redis breaker tripped {v['breakerTrips']} time(s) "
                      "(Redis calls timed out on the saturated core); some requests of that "
                      "variant used the in-memory fallback.**"]
    lines += ["", "## Goals", "", "| goal | measured (req/s) | by server CPU per request | met |",
              "|---|---:|---:|---|"]
    v = _by_key(result)
    for name, a, b, goal in GOALS:
        if a in v and b in v and v[b]["rps"]:
            r = v[a]["rps"] / v[b]["rps"]
            ca, cb = v[a].get("cpuUsPerRequest"), v[b].get("cpuUsPerRequest")
            rc = f"{cb / ca:.2f} ×" if ca and cb else "–"
            lines.append(f"| {name} | {r:.2f} × | {rc} | {_yes(r >= goal)} |")
        else:
            lines.append(f"| {name} | not run | – | – |")
    for key in P99_ROUTES:
        if key in v:
            p99 = v[key]["p99_ms"]
            lines.append(f"| p99 of {v[key]['label'].split(' ')[0]} < {P99_GOAL_MS:.0f} ms at "
                         f"{o['connections']} connections | {p99:.2f} ms | – | "
                         f"{_yes(p99 < P99_GOAL_MS)} |")
    life = result.get("tieredLifetime") or {}
    per_ttl = [  # (where measured, part of the result, its queries-per-user-per-TTL field)
        (f"(2) over its {life.get('seconds', 0):.0f} s", life, "queriesPerUserPerTtl"),
        ("3 instances (cold start)", result.get("nginx"), "dbQueriesPerUser"),
        ("workload model (TTL)", (result.get("workloadModel") or {}).get("ttl"),
         "queries_per_user_per_ttl"),

    ]
    for where, part, field in per_ttl:
        if part:
            q = part[field]
            lines.append(f"| ≤ 1 directory query per user per TTL, {where} | {q:.3f} | – | "
                         f"{_yes(q <= 1.0)} |")
    events = (result.get("workloadModel") or {}).get("events")
    if events:
        q = events["steady_queries_per_hour_per_1000"]
        lines.append(f"| event-driven: ≤ 200 directory queries per hour per 1,000 users after "
                     f"warm-up (the guide's table) | {q:,.0f} | – | {_yes(q <= 200)} |")
    r = ratios(result)
    if r:
        lines += ["", "Ratios of req/s: " + ", ".join(f"{k} = {x}" for k, x in r.items())]
        rc = cpu_ratios(result)
        lines += ["", "Ratios of capacity (1 / server CPU per request): "
                  + ", ".join(f"{k} = {x}" for k, x in rc.items())]
        rr = round_ratios(result)
        if rr:
            lines += ["", "Ratios of req/s round by round (median of the rounds' ratios, then "
                      "the lowest and highest round): "
                      + ", ".join(f"{k} = {m} ({lo}–{hi})" for k, (m, lo, hi) in rr.items())]
    model = result.get("workloadModel") or {}
    lines += _workload(model.get("ttl"), model.get("events")) + _nginx(result.get("nginx"))
    lines += _memory(result.get("memory"))
    lines += _profile(result.get("profile"))
    lines += ["", f"Total time: {result.get('elapsedSeconds', 0):.0f} s."]
    return "\n".join(lines) + "\n"


def _workload(wm: dict[str, Any] | None, ev: dict[str, Any] | None = None) -> list[str]:
    if not wm:
        return []
    g = wm["guide"]
    out = [
        "",
        "## The guide's workload model (12 validations per user per hour)",
        "",
        f"TTL run: time compressed {wm['compression']}×, TTL {wm['ttl_s']} s (300 s in the "
        f"model) and max age the same, {wm['users']} users validating at random (Poisson) "
        f"moments, {wm['model_hours']:.2f} model hour(s); {wm['requests_sent']:,} requests, "
        f"{wm['failed']} failed. Figures per 1,000 users per model hour.",
    ]
    if ev:
        out.append(
            f"Event-driven run: compressed {ev['compression']}×, TTL {ev['ttl_s']} s, max age "
            f"{ev['max_age_s']} s ({ev['max_age_s'] * ev['compression'] / 3600:g} h in the "
            f"model), {ev['users']} users, {ev['model_hours']:.1f} model hours; "
            f"{ev['requests_sent']:,} requests, {ev['failed']} failed; warm-up is the first max "
            "age.")
    out += [
        "",
        "| | validations/hour | DB queries/hour, no cache | DB queries/hour, with cache "
        "| saved | hit rate |",
        "|---|---:|---:|---:|---:|---:|",
        f"| guide's table (1,000 users) | {g['validationsPerHour']:,} | {g['queriesNoCache']:,} "
        f"| {g['queriesWithCache']:,} | {g['savingsPercent']} % | – |",
    ]
    for name, r in (("TTL 300 s", wm), ("event-driven", ev)):
        if not r:
            continue
        out += [
            f"| {name}, whole run (cold start included) | "
            f"{r['validations_per_hour_per_1000']:,.0f} | {r['validations_per_hour_per_1000']:,.0f}"
            f" | {r['queries_per_hour_per_1000']:,.0f} | {r['savings_percent']} % | "
            f"{r['hit_rate']} % |",
            f"| {name}, after warm-up | – | – | {r['steady_queries_per_hour_per_1000']:,.0f}"
            f" | – | {r['steady_hit_rate']} % |",
            f"| {name}, expected for Poisson arrivals, λT/(1+λT) | – | – | – | – | "
            f"{r['expected_hit_rate']} % |",
        ]
    out += ["", f"Directory queries per user per TTL window (TTL run): "
            f"{wm['queries_per_user_per_ttl']:.3f}."]
    if ev:
        ok = ev["steady_queries_per_hour_per_1000"] <= g["queriesWithCache"]
        out.append(f"Event-driven, after warm-up: {ev['steady_queries_per_hour_per_1000']:,.0f} "
                   f"directory queries per hour per 1,000 users against the guide's "
                   f"{g['queriesWithCache']}: {_yes(ok)}.")
    return out


def _nginx(ng: dict[str, Any] | None) -> list[str]:
    if not ng:
        return []
    return [
        "",
        f"## {ng['instances']} instances behind nginx (all on the server core)",
        "",
        "| req/s | p50 ms | p99 ms | directory queries per user (cluster, from cold) "
        "| Redis cmds / req | RSS MiB per instance | errors |",
        "|---:|---:|---:|---:|---:|---|---:|",
        f"| {ng['rps']:,.0f} | {ng['p50_ms']:.2f} | {ng['p99_ms']:.2f} | "
        f"{ng['dbQueriesPerUser']:.3f} | {ng['redisPerRequest']:.3f} | "
        f"{', '.join(str(x) for x in ng['rssMiB'])} | {ng['errors']} |",
    ]


def _memory(mem: dict[str, Any] | None) -> list[str]:
    if not mem:
        return []
    rows = [
        ("validation cache, near tier (ValidationCache)", mem["validationCache"]),
        ("decoded-token cache (SessionTokens)", mem["decodedTokens"]),
        ("active-user tracking (metrics Counters)", mem["activeUsers"]),
        ("local revocation set (RevocationList)", mem["revocations"]),
    ]
    out = [
        "",
        f"## In-process memory at {mem['users']:,} users",
        "",
        "| structure | setting (default cap) | entries | bytes/entry | tracemalloc KiB "
        "| RSS growth KiB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    out += [f"| {name} | `{m['setting']}` ({m['cap']:,}) | {m['entries']:,} "
            f"| {m['bytesPerEntry']:,} | {m['tracemalloc_kib']:,.0f} | {m['rss_delta_kib']:,} |"
            for name, m in rows]
    out.append(f"\nTotal {mem['totalKiB']:,} KiB; the budget with every structure at its "
               f"default cap: {mem['budgetAtCapsKiB'] / 1024:,.0f} MiB.")
    return out


def _profile(p: dict[str, Any] | None) -> list[str]:
    if not p or "tiered" not in p:
        return []
    t, c = p["tiered"], p["ceiling"]
    out = [
        "",
        f"## Profile of (2) (py-spy, {t['samples']:,} samples of busy time, "
        f"{t.get('rpsWhileSampled') or 0:,.0f} req/s while sampled; (1) sampled the same way at "
        f"{c.get('rpsWhileSampled') or 0:,.0f} req/s)",
        "",
        "What a request of (2) costs beyond one of (1), server CPU per request by function "
        "(self time; the rows add up to the whole difference):",
        "",
        "| function | (2) µs | (1) µs | extra µs |",
        "|---|---:|---:|---:|",
    ]
    extra = p.get("extraPerRequest", {})
    out += [f"| `{x['name']}` | {x['us']} | {x['baselineUs']} | {x['extraUs']} |"
            for x in extra.get("self", [])[:20]]
    out += ["", "The hot path's own functions and FastAPI's per-route work (inclusive µs per "
            "request):", "", "| function | (2) µs | (1) µs |", "|---|---:|---:|"]
    out += [f"| `{x['name']}` | {x['us']} | {x['baselineUs']} |" for x in extra.get("watch", [])]
    bare = p.get("oursOverBare", {})
    if bare.get("self"):
        b = p["bare"]
        out += ["", f"What a request of (1) costs beyond one of (0), the bare FastAPI app "
                f"({b['samples']:,} samples at {b.get('rpsWhileSampled') or 0:,.0f} req/s), "
                "by function (self time; negative: (0) pays it and we do not):", "",
                "| function | (1) µs | (0) µs | extra µs |", "|---|---:|---:|---:|"]
        out += [f"| `{x['name']}` | {x['us']} | {x['baselineUs']} | {x['extraUs']} |"
                for x in bare["self"][:20]]
        out += ["", "| (0): self time by package | % |", "|---|---:|"]
        out += [f"| {x['name']} | {x['percent']} |" for x in b["selfByPackage"][:12]]
    out += ["", "| (2): self time by package | % |", "|---|---:|"]
    out += [f"| {x['name']} | {x['percent']} |" for x in t["selfByPackage"][:12]]
    out += ["", "| (2): function (self) | % |", "|---|---:|"]
    out += [f"| `{x['name']}` | {x['percent']} |" for x in t["self"][:15]]
    out += ["", "| (2): function (inclusive) | % |", "|---|---:|"]
    out += [f"| `{x['name']}` | {x['percent']} |" for x in t["inclusive"][:25]]
    return out
